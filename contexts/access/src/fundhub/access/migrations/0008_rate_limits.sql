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

-- Count a batch of requests (the gateway sends what arrived while its previous batch ran), in one
-- statement: for bucket i, p_counts[i] requests, of which the first allowed[i] pass (and are
-- counted); the others may try again in waits[i] seconds. Buckets must come sorted and unique:
-- every replica then locks rows in the same order and two batches never deadlock. The same
-- arithmetic as fundhub.access.limits.gcra; the clock is the database's, one for every replica.
CREATE FUNCTION rate_limit_take(p_buckets text[], p_counts integer[],
                                p_intervals double precision[], p_periods double precision[],
                                OUT allowed integer[], OUT waits double precision[])
LANGUAGE plpgsql AS $$
DECLARE
    v_tat double precision;
    v_now double precision;
    v_start double precision;
    v_k integer;
BEGIN
    allowed := '{}';
    waits := '{}';
    FOR i IN 1 .. coalesce(array_length(p_buckets, 1), 0) LOOP
        SELECT tat INTO v_tat FROM rate_limit_buckets WHERE bucket = p_buckets[i] FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO rate_limit_buckets (bucket, tat)
            VALUES (p_buckets[i], extract(epoch FROM clock_timestamp()))
            ON CONFLICT (bucket) DO NOTHING;
            SELECT tat INTO v_tat FROM rate_limit_buckets WHERE bucket = p_buckets[i] FOR UPDATE;
        END IF;
        v_now := extract(epoch FROM clock_timestamp());
        v_start := greatest(v_tat, v_now);
        v_k := greatest(0, least(p_counts[i],
                   floor((v_now + p_periods[i] - v_start) / p_intervals[i] + 1e-9)::integer));
        IF v_k > 0 THEN
            UPDATE rate_limit_buckets SET tat = v_start + v_k * p_intervals[i]
            WHERE bucket = p_buckets[i];
        END IF;
        allowed := allowed || v_k;
        waits := waits || CASE WHEN v_k < p_counts[i]
            THEN greatest(v_start + (v_k + 1) * p_intervals[i] - v_now - p_periods[i], 0.001)
            ELSE 0 END;
    END LOOP;
END
$$;
