-- Callbacks are no longer about payouts only: an order's payment and each of its refunds are
-- delivered through the same dispatcher, pay_id naming the subject (a payId, an orderId, a
-- refundId), one delivery per (subject, state) as before. The payouts-only foreign key goes
-- (IF EXISTS: the merchants' and settlement's migrations drop it too; once is enough).
ALTER TABLE callback_deliveries DROP CONSTRAINT IF EXISTS callback_deliveries_pay_id_fkey;
