-- Webhooks: one delivery per (payout, state) to the client's callbackUrl, and every attempt.

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
