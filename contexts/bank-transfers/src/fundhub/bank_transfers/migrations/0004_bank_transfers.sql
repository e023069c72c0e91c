-- Bank transfers: the bank's apps (public keys that verify its notifications), the transfer records
-- of bkfunds.acct.transfer.notify, and every verified notification as received.

CREATE TABLE bank_apps (
    app_id         text PRIMARY KEY,
    public_key_pem text NOT NULL,
    sign_excludes  text[] NOT NULL DEFAULT '{sign}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bank_transfer_records (
    app_id                  text NOT NULL,
    record_id               text NOT NULL,
    state                   text NOT NULL,       -- AVAILABLE | FROZEN | DEDUCTED | REVERSED | REVERSAL_NOTICE
    account_id              text NOT NULL REFERENCES accounts (account_id),
    currency                char(3) NOT NULL,
    trans_amount            bigint NOT NULL,
    held_available          bigint NOT NULL DEFAULT 0,  -- of this credit, still available
    held_frozen             bigint NOT NULL DEFAULT 0,  -- of this credit, frozen
    deducted_amount         bigint NOT NULL DEFAULT 0,
    reversed_amount         bigint NOT NULL DEFAULT 0,
    channel                 text NOT NULL,
    node_id                 text NOT NULL,
    trans_time              timestamptz NOT NULL,
    channel_trade_no        text NOT NULL,
    merchant_name           text,
    merchant_id             text,
    cloud_merchant_id       text,
    in_acct_name            text NOT NULL,
    in_acct_bank_name       text,
    in_acct_no              text NOT NULL,
    ccy_code                text NOT NULL,
    fee                     bigint,
    post_fee                bigint,
    bind_status             text NOT NULL,
    deduct_status           text NOT NULL,
    deduct_channel_trade_no text,
    out_acct_name           text NOT NULL,
    out_acct_bank_name      text,
    out_acct_no             text NOT NULL,
    host_flow_no            text,
    host_tx_date            date,
    reverse_flag            text,
    use_ex                  text,
    remark                  text,
    store_list              jsonb,
    notifications_applied   integer NOT NULL DEFAULT 1,
    first_seen_at           timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, record_id)
);
CREATE INDEX bank_transfer_records_account ON bank_transfer_records (account_id);

-- Every verified notification as received (the audit trail of what the bank told us).
CREATE TABLE bank_notifications (
    message_id   text PRIMARY KEY,
    app_id       text NOT NULL,
    method       text NOT NULL,
    record_id    text,
    params       jsonb NOT NULL,
    outcome      text NOT NULL,              -- applied | stale | dead-lettered
    received_at  timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bank_notifications_record ON bank_notifications (app_id, record_id);
