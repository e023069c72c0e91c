-- The bank app a payout is sent through: only a result signed for that app may settle it.
-- NULL for payouts accepted before this column existed (the worker's FUNDHUB_BANK_APP_ID then).

ALTER TABLE payouts ADD COLUMN bank_app_id text;
