-- Channels: the WeChat Pay and Alipay apps we trust. A notification verifies only under the keys
-- of a registered app, and the app that takes new payments is the channel's active one.
-- Secrets (the WeChat Pay APIv3 key, the merchant's private keys for calling the channels' APIs)
-- are sealed under the master key (fundhub.common.sealing), like every other stored secret.

CREATE TABLE channel_apps (
    channel                     text NOT NULL CHECK (channel IN ('WECHATPAY', 'ALIPAY')),
    app_id                      text NOT NULL,  -- WeChat Pay appid, Alipay app_id
    merchant_ref                text NOT NULL,  -- WeChat Pay mchid, Alipay seller_id (PID)
    active                      boolean NOT NULL DEFAULT false,  -- takes new payments
    apiv3_key_sealed            bytea,          -- WeChat Pay: decrypts notification resources
    alipay_public_key_pem       text,           -- Alipay: verifies its notices and answers
    merchant_private_key_sealed bytea,          -- signs our API requests (WeChat merchant API key, Alipay app key)
    merchant_serial             text,           -- WeChat Pay: the serial of that key's certificate
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, app_id),
    CHECK (channel <> 'WECHATPAY' OR apiv3_key_sealed IS NOT NULL),
    CHECK (channel <> 'ALIPAY' OR alipay_public_key_pem IS NOT NULL),
    -- a WeChat Pay merchant key goes with the serial WeChat Pay knows it by
    CHECK (channel <> 'WECHATPAY' OR (merchant_private_key_sealed IS NULL) = (merchant_serial IS NULL))
);
-- One app per channel takes new payments (for now).
CREATE UNIQUE INDEX channel_apps_one_active ON channel_apps (channel) WHERE active;

-- WeChat Pay's platform public keys of an app, by the serial that names them in Wechatpay-Serial.
-- Several at once while WeChat Pay rotates them; the last one cannot be removed.
CREATE TABLE channel_platform_keys (
    channel        text NOT NULL,
    app_id         text NOT NULL,
    serial         text NOT NULL,
    public_key_pem text NOT NULL,
    added_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, app_id, serial),
    FOREIGN KEY (channel, app_id) REFERENCES channel_apps (channel, app_id) ON DELETE CASCADE
);
CREATE INDEX channel_platform_keys_serial ON channel_platform_keys (serial);
