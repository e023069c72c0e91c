-- fundhub foundation schema: operator config, ledger, bank transfer records, inbox/outbox.

-- Operator configuration -------------------------------------------------------------------
CREATE TABLE api_keys (
    key_id        text PRIMARY KEY,
    name          text NOT NULL,
    secret_sealed bytea NOT NULL,               -- AES-256-GCM under the master key
    scopes        text[] NOT NULL,
    accounts      text[] NOT NULL,              -- '{*}' means every account
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

-- Replay protection: a nonce is accepted once per key inside the timestamp window.
CREATE TABLE api_nonces (
    key_id  text NOT NULL,
    nonce   text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX api_nonces_seen_at ON api_nonces (seen_at);

CREATE TABLE bank_apps (
    app_id         text PRIMARY KEY,
    public_key_pem text NOT NULL,
    sign_excludes  text[] NOT NULL DEFAULT '{sign}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Ledger -----------------------------------------------------------------------------------
-- Every account keeps three buckets. Customer accounts carry a balance row (updated in the
-- same transaction as their postings); system accounts (clearing, bank inflow) are derived
-- from their postings so that no hot row serialises every consumer.
CREATE TABLE accounts (
    account_id     text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('customer', 'system')),
    currency       char(3) NOT NULL,
    name           text,
    allow_negative boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE account_balances (
    account_id     text PRIMARY KEY REFERENCES accounts (account_id),
    currency       char(3) NOT NULL,
    available      bigint NOT NULL DEFAULT 0,
    frozen         bigint NOT NULL DEFAULT 0,
    pending        bigint NOT NULL DEFAULT 0,
    allow_negative boolean NOT NULL DEFAULT false,
    version        bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (allow_negative OR (available >= 0 AND frozen >= 0 AND pending >= 0))
);

CREATE TABLE journal_entries (
    entry_id       uuid PRIMARY KEY,
    kind           text NOT NULL,
    ref_type       text NOT NULL,
    ref_id         text NOT NULL,
    description    text,
    correlation_id text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_entries_ref ON journal_entries (ref_type, ref_id);

CREATE TABLE postings (
    posting_id bigserial PRIMARY KEY,
    entry_id   uuid NOT NULL REFERENCES journal_entries (entry_id),
    account_id text NOT NULL REFERENCES accounts (account_id),
    bucket     text NOT NULL CHECK (bucket IN ('available', 'frozen', 'pending')),
    currency   char(3) NOT NULL,
    amount     bigint NOT NULL CHECK (amount <> 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX postings_account ON postings (account_id, posting_id);
CREATE INDEX postings_entry ON postings (entry_id);

-- A journal entry must balance per currency when its transaction commits.
CREATE FUNCTION check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM postings WHERE entry_id = NEW.entry_id
        GROUP BY currency HAVING sum(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'journal entry % does not balance', NEW.entry_id;
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER postings_balanced
    AFTER INSERT ON postings DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_entry_balanced();

-- Bank transfer notifications (bkfunds.acct.transfer.notify) ------------------------------
CREATE TABLE bank_transfer_records (
    app_id                  text NOT NULL,
    record_id               text NOT NULL,
    state                   text NOT NULL,       -- AVAILABLE | FROZEN | DEDUCTED | REVERSED | REVERSAL_NOTICE
    account_id              text NOT NULL REFERENCES accounts (account_id),
    currency                char(3) NOT NULL,
    trans_amount            bigint NOT NULL,
    held_available          bigint NOT NULL DEFAULT 0,  -- of this credit, still available
    held_frozen             bigint NOT NULL DEFAULT 0,  -- of this credit, frozen
    deducted_amount         bigint NOT NULL DEFAULT 0,
    reversed_amount         bigint NOT NULL DEFAULT 0,
    channel                 text NOT NULL,
    node_id                 text NOT NULL,
    trans_time              timestamptz NOT NULL,
    channel_trade_no        text NOT NULL,
    merchant_name           text,
    merchant_id             text,
    cloud_merchant_id       text,
    in_acct_name            text NOT NULL,
    in_acct_bank_name       text,
    in_acct_no              text NOT NULL,
    ccy_code                text NOT NULL,
    fee                     bigint,
    post_fee                bigint,
    bind_status             text NOT NULL,
    deduct_status           text NOT NULL,
    deduct_channel_trade_no text,
    out_acct_name           text NOT NULL,
    out_acct_bank_name      text,
    out_acct_no             text NOT NULL,
    host_flow_no            text,
    host_tx_date            date,
    reverse_flag            text,
    use_ex                  text,
    remark                  text,
    store_list              jsonb,
    notifications_applied   integer NOT NULL DEFAULT 1,
    first_seen_at           timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, record_id)
);
CREATE INDEX bank_transfer_records_account ON bank_transfer_records (account_id);

-- Every verified notification as received (the audit trail of what the bank told us).
CREATE TABLE bank_notifications (
    message_id   text PRIMARY KEY,
    app_id       text NOT NULL,
    method       text NOT NULL,
    record_id    text,
    params       jsonb NOT NULL,
    outcome      text NOT NULL,              -- applied | stale | dead-lettered
    received_at  timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bank_notifications_record ON bank_notifications (app_id, record_id);

-- Exactly-once plumbing ---------------------------------------------------------------------
CREATE TABLE inbox (
    consumer     text NOT NULL,
    message_id   text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    key          text,
    payload      bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
