-- Access: where a key may be used from. A key bound to a client certificate is accepted only
-- over TLS with that certificate (its SHA-256 fingerprint, lowercase hex of the DER); a key with
-- allowed ranges only from an address inside one of them. NULL / empty: no restriction.

ALTER TABLE api_keys
    ADD COLUMN client_cert_sha256 text CHECK (client_cert_sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN allowed_cidrs cidr[] NOT NULL DEFAULT '{}';
