-- Callbacks are not only a payout's any more: a merchant's state changes are delivered the same
-- way, so a delivery's subject (the column pay_id) is a payId or a merchantId, and its state a
-- payout's state or a merchant event's id. The column keeps its name: the sender, the replays
-- and the payouts' reads use it as it is.
ALTER TABLE callback_deliveries DROP CONSTRAINT IF EXISTS callback_deliveries_pay_id_fkey;
