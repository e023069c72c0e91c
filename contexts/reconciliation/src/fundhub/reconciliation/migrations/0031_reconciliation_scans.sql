-- The indexes a run's scans of the platform's side need (reconciliation.matching: each branch
-- reads one table by its own time column, for one business day): without them each run reads
-- every order, refund, payout, settlement and transfer ever made. Partial where the run filters
-- by state, so they stay as small as the rows a run can read.
-- On a live database with large tables, create them first with CREATE INDEX CONCURRENTLY under
-- the same names (this migration runs in a transaction, and IF NOT EXISTS then leaves them).
CREATE INDEX IF NOT EXISTS orders_paid_by_channel ON orders (channel, paid_at)
    WHERE paid_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS order_refunds_finished ON order_refunds (finished_at)
    WHERE state = 'SUCCESS';
CREATE INDEX IF NOT EXISTS bank_transfer_records_trans_time ON bank_transfer_records (trans_time);
CREATE INDEX IF NOT EXISTS bank_transfer_records_reversed ON bank_transfer_records (updated_at)
    WHERE state = 'REVERSED';
CREATE INDEX IF NOT EXISTS payouts_finished ON payouts (finished_at)
    WHERE state IN ('SUCCESS', 'RETURNED');
CREATE INDEX IF NOT EXISTS payouts_returned ON payouts (updated_at) WHERE state = 'RETURNED';
CREATE INDEX IF NOT EXISTS settlements_finished ON settlements (finished_at)
    WHERE state = 'SETTLED';
