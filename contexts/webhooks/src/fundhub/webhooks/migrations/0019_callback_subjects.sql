-- Callbacks are no longer about payouts only: orders (their payment, each refund) and merchants
-- deliver theirs through the same dispatcher. pay_id names the subject of a delivery (a payId,
-- an orderId, a refundId, ...), one delivery per (subject, state) as before.
ALTER TABLE callback_deliveries DROP CONSTRAINT IF EXISTS callback_deliveries_pay_id_fkey;
