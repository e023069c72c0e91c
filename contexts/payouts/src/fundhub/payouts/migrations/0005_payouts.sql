-- Payouts: idempotent requests (requestId per API key), the payouts themselves, payId numbers.

CREATE SEQUENCE payout_seq;

-- The idempotency key: requestId is unique per API key. The fingerprint is the normalised body.
CREATE TABLE payout_requests (
    key_id      text NOT NULL,
    request_id  text NOT NULL,
    fingerprint text NOT NULL,
    pay_id      text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, request_id)
);

-- Written by the gateway as PROCESSING when accepted; every later state by payment-worker.
CREATE TABLE payouts (
    pay_id           text PRIMARY KEY,
    key_id           text NOT NULL,
    request_id       text NOT NULL,
    supplier_id      text NOT NULL,
    payer_account_id text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    currency         char(3) NOT NULL,
    payee            jsonb NOT NULL,
    purpose          text,
    callback_url     text,
    extension        jsonb,
    state            text NOT NULL DEFAULT 'PROCESSING'
                     CHECK (state IN ('PROCESSING', 'SUCCESS', 'FAILED', 'RETURNED')),
    error_code       text,
    message          text,
    bank_txn_id      text,
    held             boolean NOT NULL DEFAULT false,   -- the amount is frozen on the payer
    submitted_at     timestamptz,                      -- the bank acknowledged the order
    next_poll_at     timestamptz,
    poll_attempts    integer NOT NULL DEFAULT 0,
    deadline_at      timestamptz,
    alerted_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (key_id, request_id)
)
-- Rows are updated three or four times each (frozen, noted at the bank, settled): room on their
-- pages lets the updates that change no indexed column stay HOT (no new index entries).
WITH (fillfactor = 80);
CREATE INDEX payouts_to_poll ON payouts (next_poll_at) WHERE state = 'PROCESSING';
