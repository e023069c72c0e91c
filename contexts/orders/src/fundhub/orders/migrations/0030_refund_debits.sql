-- A refund made after the order's split: the depository debits each member by its share
-- (orders.refund_debits). Written in the transaction that makes the refund SUCCESS, then
-- driven at the bank by payment-worker until its result is final.
CREATE TABLE order_refund_debits (
    refund_id        text PRIMARY KEY REFERENCES order_refunds (refund_id),
    order_id         text NOT NULL REFERENCES orders (order_id),
    order_no         text NOT NULL,
    settlement_id    text NOT NULL,           -- the split taken back from (split_request_id)
    currency         text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    members          jsonb NOT NULL,          -- [{memberId, accountId, amount}]
    state            text NOT NULL DEFAULT 'PENDING'
                     CHECK (state IN ('PENDING', 'PROCESSING', 'SUCCESS', 'FAILED')),
    bank_debit_id    text,
    error_code       text,
    reason           text,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,             -- the bank's time of the debit
    created_at       timestamptz NOT NULL DEFAULT now(),  -- the refund's SUCCESS
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_refund_debits_due ON order_refund_debits (next_attempt_at)
    WHERE state IN ('PENDING', 'PROCESSING');
-- Reconciliation reads a day's debits by the time the refund took the shares (the ledger's).
CREATE INDEX order_refund_debits_created ON order_refund_debits (created_at);
