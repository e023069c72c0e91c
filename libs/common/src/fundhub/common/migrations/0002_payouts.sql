-- Supplier payouts: idempotent requests, the payout read model, client callbacks.

-- Each API key gets a webhook secret, kept apart from its API secret.
ALTER TABLE api_keys ADD COLUMN webhook_secret_sealed bytea;

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
);
CREATE INDEX payouts_to_poll ON payouts (next_poll_at) WHERE state = 'PROCESSING';
CREATE INDEX payouts_payer ON payouts (payer_account_id);

-- One delivery per (payout, state) to the client's callbackUrl; attempts are kept.
CREATE TABLE callback_deliveries (
    delivery_id     bigserial PRIMARY KEY,
    pay_id          text NOT NULL REFERENCES payouts (pay_id),
    state           text NOT NULL,
    url             text NOT NULL,
    key_id          text NOT NULL,
    body            bytea NOT NULL,
    status          text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'GAVE_UP')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pay_id, state)
);
CREATE INDEX callback_deliveries_due ON callback_deliveries (next_attempt_at) WHERE status = 'PENDING';

CREATE TABLE callback_attempts (
    attempt_id   bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES callback_deliveries (delivery_id),
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    error        text,
    duration_ms  integer NOT NULL
);
CREATE INDEX callback_attempts_delivery ON callback_attempts (delivery_id);
