-- Callbacks are not only a payout's any more: merchants (and orders) deliver their changes
-- through the same dispatcher, so pay_id names the subject of a delivery (a payId, a
-- merchantId, ...), one delivery per (subject, state) as before; a merchant's state is the id
-- of its event. The column keeps its name: the sender, the replays and the payouts' reads use
-- it as it is. What can never become a delivery is a message of a type the dispatcher does not
-- know (webhooks.intake).
ALTER TABLE callback_deliveries DROP CONSTRAINT IF EXISTS callback_deliveries_pay_id_fkey;
