-- Transfers the bank credited to an account that may no longer take money (a merchant CLOSING
-- or CLOSED, whose close found its account empty): the money is held in the suspense account
-- (held_in, sys:bank-suspense:<ccy>) and each such credit is kept here for reconciliation.
-- The record (bank_transfer_records, account_id = held_in) follows its later notices from there.
CREATE TABLE bank_transfer_exceptions (
    app_id       text NOT NULL,
    record_id    text NOT NULL,
    account_id   text NOT NULL,              -- the account the bank named (in_acct_no)
    holder       text NOT NULL,              -- whose it is (the merchant id)
    holder_state text NOT NULL,              -- CLOSING | CLOSED when the credit arrived
    held_in      text NOT NULL REFERENCES accounts (account_id),
    currency     char(3) NOT NULL,
    amount       bigint NOT NULL CHECK (amount > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, record_id),
    FOREIGN KEY (app_id, record_id) REFERENCES bank_transfer_records (app_id, record_id)
);
