-- Data initialisation (资金导入 / 数据初始化): the platform's existing merchants and their funds
-- brought in before it goes live on the depository.

-- One opening balance per merchant, ever: the import's idempotency. The entry (credit of the
-- merchant's available, debit of the opening-balance equity account) is NULL for a zero balance.
CREATE TABLE init_opening_balances (
    merchant_id  text PRIMARY KEY REFERENCES merchants (merchant_id),
    owner_key_id text NOT NULL,
    merchant_no  text NOT NULL,
    currency     char(3) NOT NULL,
    amount       bigint NOT NULL CHECK (amount >= 0),
    entry_id     uuid REFERENCES journal_entries (entry_id),
    file_sha256  text NOT NULL,                    -- the file it came from
    line_no      integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_key_id, merchant_no),
    CHECK ((amount = 0) = (entry_id IS NULL))
);
