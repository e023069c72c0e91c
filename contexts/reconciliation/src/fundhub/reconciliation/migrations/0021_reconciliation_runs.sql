-- Runs of the matching (one current per source and day; a redone run supersedes, both kept),
-- the discrepancies each found with both sides' evidence, what crosses midnight to the next
-- day's run, the balance checks, and every action taken on a discrepancy.

CREATE TABLE recon_runs (
    run_id        text PRIMARY KEY,
    source        text NOT NULL CHECK (source IN ('wechatpay', 'alipay', 'bank')),
    day           date NOT NULL,
    file_id       bigint NOT NULL REFERENCES recon_files (file_id),
    state         text NOT NULL DEFAULT 'CURRENT' CHECK (state IN ('CURRENT', 'SUPERSEDED')),
    superseded_by text REFERENCES recon_runs (run_id) DEFERRABLE INITIALLY DEFERRED,
    counts        jsonb NOT NULL,                -- per class: number of items
    sums          jsonb NOT NULL,                -- per class: fen (the larger side's amount)
    line_count    integer NOT NULL,
    record_count  integer NOT NULL,
    carried_in    integer NOT NULL,
    carried_out   integer NOT NULL,
    unexplained   integer NOT NULL DEFAULT 0,    -- balance differences nothing explains
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    run_by        text NOT NULL
);
CREATE UNIQUE INDEX recon_runs_current ON recon_runs (source, day) WHERE state = 'CURRENT';
CREATE INDEX recon_runs_day ON recon_runs (day, source);

CREATE TABLE recon_discrepancies (
    discrepancy_id  text PRIMARY KEY,
    run_id          text NOT NULL REFERENCES recon_runs (run_id),
    class           text NOT NULL CHECK (class IN ('missing_on_platform', 'missing_at_channel',
                        'amount_mismatch', 'status_mismatch', 'duplicate', 'fee_difference')),
    state           text NOT NULL DEFAULT 'OPEN' CHECK (state IN ('OPEN', 'ADJUSTMENT_PROPOSED',
                        'RESOLVED', 'CARRIED_OVER', 'WRITTEN_OFF')),
    kind            text NOT NULL,
    reference       text NOT NULL,
    account         text,
    statement_fen   bigint,                      -- the source's amount (NULL: no line)
    platform_fen    bigint,                      -- ours (NULL: no record)
    statement_fee   bigint,
    platform_fee    bigint,
    line_file_id    bigint,                      -- the source's line (evidence)
    line_no         integer,
    statement       jsonb,                       -- that line as read
    platform        jsonb,                       -- our record as it stood
    proposal        jsonb,                       -- the adjustment proposed, while proposed
    proposed_by     text,
    entry_id        uuid,                        -- the adjustment posted, once resolved
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_discrepancies_run ON recon_discrepancies (run_id, class, state);
CREATE INDEX recon_discrepancies_open ON recon_discrepancies (state) WHERE state <> 'RESOLVED';

-- Near-midnight items a run hands to the next day's run (the other side may hold them there).
CREATE TABLE recon_carry (
    source       text NOT NULL,
    for_day      date NOT NULL,
    side         text NOT NULL CHECK (side IN ('statement', 'platform')),
    kind         text NOT NULL,
    reference    text NOT NULL,
    from_run     text NOT NULL REFERENCES recon_runs (run_id),
    line_file_id bigint,
    line_no      integer,
    amount_fen   bigint NOT NULL,
    fee_fen      bigint NOT NULL,
    outcome      text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    account      text,
    record       jsonb NOT NULL,
    PRIMARY KEY (source, for_day, side, kind, reference)
);
CREATE INDEX recon_carry_run ON recon_carry (from_run);

CREATE TABLE recon_balance_checks (
    run_id        text NOT NULL REFERENCES recon_runs (run_id),
    account       text NOT NULL,
    ledger_fen    bigint NOT NULL,               -- the ledger at the end of the day (GMT+8)
    bank_fen      bigint NOT NULL,               -- the bank's closing balance
    difference    bigint NOT NULL,               -- bank - ledger
    explained_fen bigint NOT NULL,               -- what the day's discrepancies account for
    state         text NOT NULL CHECK (state IN ('AGREED', 'EXPLAINED', 'UNEXPLAINED')),
    PRIMARY KEY (run_id, account)
);

-- Every action on a discrepancy, append-only: who, when, why.
CREATE TABLE recon_actions (
    action_id      bigserial PRIMARY KEY,
    discrepancy_id text NOT NULL REFERENCES recon_discrepancies (discrepancy_id),
    action         text NOT NULL,
    from_state     text NOT NULL,
    to_state       text NOT NULL,
    actor          text NOT NULL,
    reason         text NOT NULL,
    detail         jsonb,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_actions_discrepancy ON recon_actions (discrepancy_id, action_id);

CREATE FUNCTION recon_actions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'recon_actions is append-only';
END $$;
CREATE TRIGGER recon_actions_no_change BEFORE UPDATE OR DELETE ON recon_actions
    FOR EACH ROW EXECUTE FUNCTION recon_actions_append_only();
