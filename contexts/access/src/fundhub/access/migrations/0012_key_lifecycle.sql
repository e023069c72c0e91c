-- Key lifecycle: environment (live or sandbox), expiry, revocation, and secrets kept valid for an
-- overlap after a rotation. api_keys keeps the current secrets; a rotation moves the replaced
-- one here with the end of its overlap.

ALTER TABLE api_keys
    ADD COLUMN environment text NOT NULL DEFAULT 'sandbox'
        CHECK (environment IN ('live', 'sandbox')),
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN revoked_at timestamptz;

CREATE TABLE api_key_retiring_secrets (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id        text NOT NULL REFERENCES api_keys (key_id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('api', 'webhook')),
    secret_sealed bytea NOT NULL,               -- AES-256-GCM under the master key
    retired_at    timestamptz NOT NULL DEFAULT now(),
    valid_until   timestamptz NOT NULL
);
CREATE INDEX api_key_retiring_secrets_key ON api_key_retiring_secrets (key_id, kind);

-- Every change to a key is announced, so each gateway replica drops its cached copy at once
-- (revocation effective everywhere within a round trip, not a cache lifetime).
CREATE FUNCTION api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('fundhub_api_keys', OLD.key_id);
    ELSE
        PERFORM pg_notify('fundhub_api_keys', NEW.key_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_key_changed();
CREATE TRIGGER api_key_retiring_secrets_changed
    AFTER INSERT OR UPDATE OR DELETE ON api_key_retiring_secrets
    FOR EACH ROW EXECUTE FUNCTION api_key_changed();
