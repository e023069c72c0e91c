-- Settlements: an order's split instruction to the depository and its outcome, one row per
-- attempt. At most one attempt per order is live or done (the partial unique index); a refused
-- one can be followed by another when the platform confirms again.

CREATE SEQUENCE settlement_seq;

CREATE TABLE settlements (
    settlement_id   text PRIMARY KEY,              -- 'STL' + yyyymmdd + 10 digits: the
                                                   -- depository's split_request_id
    order_id        text NOT NULL,                 -- orders.order_id
    key_id          text NOT NULL,                 -- the order's tenant (API key)
    order_no        text NOT NULL,
    trigger         text NOT NULL CHECK (trigger IN ('SCHEDULED', 'CONFIRMED')),
    state           text NOT NULL DEFAULT 'PENDING'
                    CHECK (state IN ('PENDING', 'PROCESSING', 'SETTLED', 'REFUSED')),
    currency        char(3) NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    parts           jsonb NOT NULL,                -- [{merchantId, accountId, memberName, amount}]
    notify_url      text,                          -- the order's: where the outcome is called back
    bank_app_id     text NOT NULL,                 -- only a result signed for it counts
    bank_split_id   text,
    error_code      text,
    message         text,
    attempts        integer NOT NULL DEFAULT 0,    -- registrations and queries made
    next_attempt_at timestamptz,                   -- PENDING: register; PROCESSING: query
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE UNIQUE INDEX settlements_one_per_order ON settlements (order_id) WHERE state <> 'REFUSED';
CREATE INDEX settlements_order ON settlements (order_id, created_at);
-- The scheduler's work: instructions to register and results to ask for, by when they are due.
CREATE INDEX settlements_due ON settlements (next_attempt_at)
    WHERE state IN ('PENDING', 'PROCESSING');

