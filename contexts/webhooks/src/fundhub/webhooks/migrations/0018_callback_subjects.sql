-- Callbacks are not only a payout's any more: a merchant's state changes are delivered the same
-- way, so a delivery's subject (the column pay_id) is a payId or a merchantId, and its state a
-- payout's state or a merchant event's id. The column keeps its name: the sender, the replays
-- and the payouts' reads use it as it is.
--
-- The foreign key to payouts becomes a trigger that accepts either subject, refusing any other
-- as the key did (SQLSTATE 23503): a callback for something that does not exist is still
-- refused by the database, and the dispatcher parks it on the dead-letter topic. A new kind of
-- subject adds its table here.
ALTER TABLE callback_deliveries DROP CONSTRAINT IF EXISTS callback_deliveries_pay_id_fkey;

CREATE FUNCTION callback_subject_exists() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM payouts WHERE pay_id = NEW.pay_id)
       AND NOT EXISTS (SELECT 1 FROM merchants WHERE merchant_id = NEW.pay_id) THEN
        RAISE EXCEPTION 'callback for an unknown subject %', NEW.pay_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER callback_deliveries_subject
    BEFORE INSERT OR UPDATE OF pay_id ON callback_deliveries
    FOR EACH ROW EXECUTE FUNCTION callback_subject_exists();
