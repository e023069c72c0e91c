-- Audit: every request, callback and operator command, in one hash chain (see fundhub.audit.chain).
-- Partitioned by the month the entry was logged (the writer's clock under the head's lock, so
-- months follow the sequence and an archived month is a prefix of the chain).

CREATE TABLE audit_head (
    id   smallint PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE audit_log (
    seq            bigint NOT NULL,
    logged_at      timestamptz NOT NULL,
    at             timestamptz NOT NULL,
    kind           text NOT NULL,
    actor          text,
    route          text NOT NULL,
    status         integer NOT NULL,
    correlation_id text NOT NULL,
    body           bytea NOT NULL,
    hash           bytea NOT NULL,
    PRIMARY KEY (seq, logged_at)
) PARTITION BY RANGE (logged_at);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_correlation ON audit_log (correlation_id);

-- Old months exported to a compressed file, then dropped: the chain goes on from last_hash.
CREATE TABLE audit_archives (
    month       date PRIMARY KEY,
    rows        bigint NOT NULL,
    first_seq   bigint,
    last_seq    bigint,
    last_hash   bytea,
    file        text NOT NULL,
    sha256      text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
);

-- The month's partition, made when its first entry comes.
CREATE FUNCTION audit_ensure_partition(month date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    name text := 'audit_log_' || to_char(month, 'YYYYMM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
            name, month, month + interval '1 month');
    END IF;
END $$;

-- Append-only: rows are never updated or deleted (a month leaves whole, by archive).
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
