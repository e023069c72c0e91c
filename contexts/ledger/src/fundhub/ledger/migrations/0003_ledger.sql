-- Ledger: accounts, their balances, the journal and its postings.
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
