-- Merchants: a platform's sub-merchants (子商户), each a member of the depository with a ledger
-- account. The owner is the API key that registered it: a tenant touches only its own.
CREATE TABLE merchants (
    merchant_id  text PRIMARY KEY,                 -- ours: 'mch_' + 26 time-ordered characters
    owner_key_id text NOT NULL,                    -- api_keys.key_id of the registering tenant
    merchant_no  text NOT NULL,                    -- the platform's id, its idempotency key
    state        text NOT NULL CHECK (state IN ('PENDING_REVIEW', 'ACTIVE', 'REJECTED',
                                                'CLOSING', 'CLOSED')),
    account_id   text NOT NULL UNIQUE,             -- ledger account (pending/available/frozen)
    currency     char(3) NOT NULL DEFAULT 'CNY',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Written by the merchants context; NULL or default on rows written by other means.
    fingerprint        text,                       -- SHA-256 of the registration: merchantNo's
                                                   -- idempotency (same body, same merchant)
    notify_url         text,                       -- where its state changes are called back
    approved_version   integer,                    -- the material version in force (trading)
    latest_version     integer NOT NULL DEFAULT 0,
    version_pending    boolean NOT NULL DEFAULT false, -- the latest version is under review
    member_no          text,                       -- the depository's number for the member
    reason             text,                       -- the depository's last reason (a rejection)
    settlement_binding text,                       -- the verified account withdrawals use
    UNIQUE (owner_key_id, merchant_no)
);

-- Every version of a merchant's material, kept: the depository reviews each.
CREATE TABLE merchant_versions (
    merchant_id text NOT NULL REFERENCES merchants (merchant_id),
    version     integer NOT NULL CHECK (version > 0),
    state       text NOT NULL CHECK (state IN ('PENDING_REVIEW', 'APPROVED', 'REJECTED')),
    materials   jsonb NOT NULL,                    -- as sent (camelCase); masked when shown
    fingerprint text NOT NULL,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    reviewed_at timestamptz,
    PRIMARY KEY (merchant_id, version)
);

-- Settlement accounts (withdrawal cards), each verified by a micro-deposit (小额鉴权).
CREATE TABLE merchant_settlement_accounts (
    binding_id      text PRIMARY KEY,              -- 'msa_' + 26 time-ordered characters
    merchant_id     text NOT NULL REFERENCES merchants (merchant_id),
    account_no      text NOT NULL,
    account_name    text NOT NULL,
    bank_name       text NOT NULL,
    fingerprint     text NOT NULL,
    state           text NOT NULL CHECK (state IN ('VERIFYING', 'AWAITING_CONFIRMATION',
                        'CONFIRMING', 'VERIFIED', 'REPLACED', 'FAILED', 'SUPERSEDED')),
    failed_attempts integer NOT NULL DEFAULT 0,    -- wrong amounts reported (5 fail it)
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    verified_at     timestamptz
);
CREATE INDEX merchant_settlement_accounts_merchant
    ON merchant_settlement_accounts (merchant_id, binding_id);
ALTER TABLE merchants ADD FOREIGN KEY (settlement_binding)
    REFERENCES merchant_settlement_accounts (binding_id);

-- What we asked the depository, each under its own id (the bank's idempotency key), and the
-- bank app it went through: only a result signed for that app may decide it.
CREATE TABLE merchant_requests (
    request_id    text PRIMARY KEY,                -- 'mrq_' + 26 time-ordered characters
    merchant_id   text NOT NULL REFERENCES merchants (merchant_id),
    kind          text NOT NULL CHECK (kind IN ('OPEN', 'MATERIALS', 'BIND', 'CONFIRM', 'CLOSE')),
    version       integer,                         -- OPEN, MATERIALS: the version reviewed
    binding_id    text REFERENCES merchant_settlement_accounts (binding_id), -- BIND, CONFIRM
    amount        bigint CHECK (amount > 0),       -- CONFIRM: the amount reported, fen
    state         text NOT NULL DEFAULT 'QUEUED' CHECK (state IN ('QUEUED', 'SENT', 'DONE')),
    outcome       text CHECK (outcome IN ('SUCCESS', 'FAILED')),
    reason        text,
    bank_app_id   text,
    poll_attempts integer NOT NULL DEFAULT 0,
    next_poll_at  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    finished_at   timestamptz
);
CREATE INDEX merchant_requests_due ON merchant_requests (next_poll_at) WHERE state <> 'DONE';
CREATE INDEX merchant_requests_merchant ON merchant_requests (merchant_id);
