-- Merchants: a platform's sub-merchants (子商户), each a member of the depository with a ledger
-- account. The owner is the API key that registered it: a tenant touches only its own.
CREATE TABLE merchants (
    merchant_id  text PRIMARY KEY,                 -- ours: 'mch_' + time-ordered uuid
    owner_key_id text NOT NULL,                    -- api_keys.key_id of the registering tenant
    merchant_no  text NOT NULL,                    -- the platform's id, its idempotency key
    state        text NOT NULL CHECK (state IN ('PENDING_REVIEW', 'ACTIVE', 'REJECTED',
                                                'CLOSING', 'CLOSED')),
    account_id   text NOT NULL UNIQUE,             -- ledger account (pending/available/frozen)
    currency     char(3) NOT NULL DEFAULT 'CNY',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_key_id, merchant_no)
);
