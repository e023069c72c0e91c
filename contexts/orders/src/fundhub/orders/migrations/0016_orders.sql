-- Orders with split rules, their parts, their refunds, and the channel notifications that
-- matched none of them (kept for reconciliation).

CREATE SEQUENCE order_seq;
CREATE SEQUENCE order_refund_seq;

-- One row per order; its id is what the channel and the depository know it by (out_trade_no).
-- Written by the gateway (created, registered, payment created) and by the consumers of the
-- channels' notifications (paid, closed). Settlement sets settling_id while it moves the shares
-- (refunds wait) and settled_at once they are in available (refunds then take from there).
CREATE TABLE orders (
    order_id        text PRIMARY KEY,                 -- 'ORD' + yyyymmdd + 10 digits
    key_id          text NOT NULL,                    -- the tenant (API key) that created it
    order_no        text NOT NULL,                    -- the platform's id: the idempotency key
    fingerprint     text NOT NULL,                    -- SHA-256 of the normalised request
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        char(3) NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('WECHATPAY', 'ALIPAY')),
    app_id          text NOT NULL,                    -- the channel app that takes the payment
    merchant_ref    text,                             -- its merchant: mchid, or seller_id
    description     text NOT NULL,
    platform_fee    bigint NOT NULL CHECK (platform_fee >= 0),
    notify_url      text,
    state           text NOT NULL DEFAULT 'CREATED'
                    CHECK (state IN ('CREATED', 'AWAITING_PAYMENT', 'PAID', 'CLOSED', 'FAILED')),
    error_code      text,
    message         text,
    depository_ref  text,                             -- the depository's id once registered
    registered_at   timestamptz,
    payment_params  jsonb,                            -- what the checkout needs (prepay, QR)
    transaction_id  text,                             -- the channel's, once paid
    paid_at         timestamptz,
    settling_id     text,                             -- settlement under way (refunds wait)
    settled_at      timestamptz,                      -- shares moved pending -> available
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (key_id, order_no)
);
-- Settlement's scheduler finds the paid orders not settled yet by their payment time.
CREATE INDEX orders_to_settle ON orders (paid_at) WHERE state = 'PAID' AND settled_at IS NULL;

-- Where an order's money goes: each receiver's share in the request's order, then the
-- platform fee (merchant_id NULL), each to a ledger account.
CREATE TABLE order_parts (
    order_id    text NOT NULL REFERENCES orders (order_id),
    position    smallint NOT NULL CHECK (position >= 0),
    merchant_id text,
    account_id  text NOT NULL,
    amount      bigint NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (order_id, position)
);
-- The merchants' close asks how many unsettled orders name a merchant (orders.unsettled).
CREATE INDEX order_parts_merchant ON order_parts (merchant_id) WHERE merchant_id IS NOT NULL;

-- A refund: admitted by the gateway (PROCESSING), its money held and sent to the channel by
-- payment-worker, final on the channel's notification or answer.
CREATE TABLE order_refunds (
    refund_id         text PRIMARY KEY,               -- 'RFD' + yyyymmdd + 10 digits: out_refund_no
    order_id          text NOT NULL REFERENCES orders (order_id),
    refund_no         text NOT NULL,                  -- the platform's id: the idempotency key
    fingerprint       text NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    allocation        bigint[] NOT NULL,              -- fen per part, in the parts' order
    reason            text,
    state             text NOT NULL DEFAULT 'PROCESSING'
                      CHECK (state IN ('PROCESSING', 'SUCCESS', 'CLOSED', 'FAILED')),
    error_code        text,
    message           text,
    held              boolean NOT NULL DEFAULT false, -- its money was taken from the parts
    source_bucket     text CHECK (source_bucket IN ('pending', 'available')),
    channel_refund_id text,
    submitted_at      timestamptz,                    -- the channel acknowledged the request
    next_poll_at      timestamptz,
    poll_attempts     integer NOT NULL DEFAULT 0,
    deadline_at       timestamptz,
    alerted_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    UNIQUE (order_id, refund_no)
);
CREATE INDEX order_refunds_to_poll ON order_refunds (next_poll_at)
    WHERE state = 'PROCESSING' AND held;

-- Verified channel notifications that moved no money: no such order, another app, another
-- amount, a refund we never asked for, a result contradicting a final one.
CREATE TABLE order_exceptions (
    exception_id   bigserial PRIMARY KEY,
    message_id     text NOT NULL UNIQUE,
    channel        text NOT NULL,
    app_id         text NOT NULL,
    out_trade_no   text NOT NULL,
    out_refund_no  text,
    transaction_id text,
    kind           text NOT NULL,
    reason         text NOT NULL,
    event          jsonb NOT NULL,                    -- the notification as received
    order_id       text,                              -- the order it names, when there is one
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz
);
CREATE INDEX order_exceptions_open ON order_exceptions (created_at) WHERE resolved_at IS NULL;
