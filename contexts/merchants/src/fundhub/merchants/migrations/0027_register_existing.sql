-- Data initialisation (the reconciliation context's `fundhub init import merchants`) registers
-- the platform's existing merchants with the depository.

-- A merchant that traded before the depository is registered with it as an existing account
-- (kind REGISTER, answered at once) rather than opened for review.
ALTER TABLE merchant_requests DROP CONSTRAINT merchant_requests_kind_check;
ALTER TABLE merchant_requests ADD CONSTRAINT merchant_requests_kind_check
    CHECK (kind IN ('OPEN', 'MATERIALS', 'BIND', 'CONFIRM', 'CLOSE', 'REGISTER'));
