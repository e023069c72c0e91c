-- Callbacks are no longer about payouts only: orders (their payment, each refund) deliver theirs
-- through the same dispatcher. pay_id names the subject of a delivery (a payId, an orderId, a
-- refundId), one delivery per (subject, state) as before; that the subject exists is checked
-- by the intake for each callback type (webhooks.intake.SUBJECTS), as the key did for payouts.
ALTER TABLE callback_deliveries DROP CONSTRAINT IF EXISTS callback_deliveries_pay_id_fkey;
