-- Statement files as received (one row per distinct file of a source and day), their detail lines
-- and the bank's closing balances. A corrected file for the same day supersedes the current one;
-- both are kept. The same bytes again (same sha256) are the same file: nothing changes.

CREATE TABLE recon_files (
    file_id       bigserial PRIMARY KEY,
    source        text NOT NULL CHECK (source IN ('wechatpay', 'alipay', 'bank')),
    day           date NOT NULL,                 -- the business day (GMT+8) it reports
    sha256        text NOT NULL,
    name          text NOT NULL,
    line_count    integer NOT NULL,
    amount_fen    bigint NOT NULL,               -- the file's own totals (checked by its parser)
    refund_fen    bigint NOT NULL,
    fee_fen       bigint NOT NULL,
    lines_fen     bigint NOT NULL,               -- the sum of its lines' amounts, as loaded
    imported_by   text NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now(),
    superseded_by bigint REFERENCES recon_files (file_id) DEFERRABLE INITIALLY DEFERRED,
    superseded_at timestamptz,
    UNIQUE (source, day, sha256)
);
-- One current file per source and day.
CREATE UNIQUE INDEX recon_files_current ON recon_files (source, day) WHERE superseded_by IS NULL;

-- Loaded by COPY: no foreign key and no unique index (per-row checks and b-tree inserts would be
-- most of the load's time); a file's lines are written in the transaction that writes its
-- recon_files row, numbered by its parser. Lines are appended file by file, so a BRIN index on
-- file_id finds a file's pages for almost nothing.
CREATE TABLE recon_lines (
    file_id      bigint NOT NULL,
    line_no      integer NOT NULL,
    kind         text NOT NULL,                  -- PAYMENT | REFUND | CREDIT | DEBIT
    reference    text NOT NULL,                  -- the platform's id as the source echoes it
    source_ref   text NOT NULL,
    amount_fen   bigint NOT NULL,
    fee_fen      bigint NOT NULL,
    status       text NOT NULL,                  -- the source's word, as written
    outcome      text NOT NULL,                  -- what it means: OK | FAILED | OTHER
    occurred_at  timestamptz NOT NULL,
    account      text,
    balance_fen  bigint,
    counterparty text,
    business     text,                           -- the bank's business type (channels: NULL)
    match_ref    text NOT NULL                   -- what it is matched by (match_keys.line_key)
);
CREATE INDEX recon_lines_file ON recon_lines USING brin (file_id) WITH (pages_per_range = 32);

CREATE TABLE recon_closing_balances (
    file_id     bigint NOT NULL REFERENCES recon_files (file_id),
    line_no     integer NOT NULL,
    account     text NOT NULL,
    balance_fen bigint NOT NULL,
    currency    char(3) NOT NULL,
    PRIMARY KEY (file_id, line_no)
);
