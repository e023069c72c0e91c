-- Access: the API keys of upstream systems (secrets sealed under the master key) and the nonces
-- that make each signed request usable once.

CREATE TABLE api_keys (
    key_id        text PRIMARY KEY,
    name          text NOT NULL,
    secret_sealed bytea NOT NULL,               -- AES-256-GCM under the master key
    scopes        text[] NOT NULL,
    accounts      text[] NOT NULL,              -- '{*}' means every account
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    -- Signs the payout callbacks to this client; apart from the API secret.
    webhook_secret_sealed bytea
);

-- Replay protection: a nonce is accepted once per key inside the timestamp window.
CREATE TABLE api_nonces (
    key_id  text NOT NULL,
    nonce   text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX api_nonces_seen_at ON api_nonces (seen_at);
