-- Several public keys per bank app, for the bank's key rotation: a notification verifies under
-- the app's registered key (bank_apps.public_key_pem) or any key added here.

CREATE TABLE bank_app_keys (
    app_id         text NOT NULL REFERENCES bank_apps (app_id) ON DELETE CASCADE,
    fingerprint    text NOT NULL,   -- first 16 hex of SHA-256 of the normalised PEM
    public_key_pem text NOT NULL,
    added_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, fingerprint)
);
