-- Access: request rate limits. A key's own limits per route class (absent: the gateway's
-- default), and the shared state of every limit, so that several gateway replicas enforce one
-- limit together.

CREATE TABLE api_key_rate_limits (
    key_id      text NOT NULL REFERENCES api_keys (key_id) ON DELETE CASCADE,
    route_class text NOT NULL CHECK (route_class IN ('read', 'write')),
    max_requests integer NOT NULL CHECK (max_requests > 0),
    period_s    double precision NOT NULL CHECK (period_s > 0),
    PRIMARY KEY (key_id, route_class)
);

-- GCRA: a bucket is the theoretical arrival time of its next request (epoch seconds). UNLOGGED:
-- no WAL on the hot routes' path; after a crash the table is empty, which only forgives what
-- callers had used of their limits. fillfactor leaves room for HOT updates in place.
CREATE UNLOGGED TABLE rate_limit_buckets (
    bucket text PRIMARY KEY,
    tat    double precision NOT NULL
) WITH (fillfactor = 50);

-- One request against a bucket, atomically (the row is locked while it is decided): 0 when it
-- may pass (and it is counted), else the seconds to wait. The same arithmetic as
-- fundhub.access.limits.gcra. The clock is the database's, one for every replica.
CREATE FUNCTION rate_limit_take(p_bucket text, p_interval double precision,
                                p_period double precision)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    v_tat double precision;
    v_now double precision;
    v_new double precision;
BEGIN
    SELECT tat INTO v_tat FROM rate_limit_buckets WHERE bucket = p_bucket FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO rate_limit_buckets (bucket, tat)
        VALUES (p_bucket, extract(epoch FROM clock_timestamp()) + p_interval)
        ON CONFLICT (bucket) DO NOTHING;
        IF FOUND THEN
            RETURN 0;
        END IF;
        SELECT tat INTO v_tat FROM rate_limit_buckets WHERE bucket = p_bucket FOR UPDATE;
    END IF;
    v_now := extract(epoch FROM clock_timestamp());
    v_new := greatest(v_tat, v_now) + p_interval;
    IF v_new - v_now - p_period > 1e-9 THEN
        RETURN v_new - v_now - p_period;
    END IF;
    UPDATE rate_limit_buckets SET tat = v_new WHERE bucket = p_bucket;
    RETURN 0;
END
$$;
