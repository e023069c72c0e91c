-- Sandbox scenarios (payouts.sandbox): how the simulated bank treats the payout a key creates
-- with request_id. Only a sandbox deployment writes here (its gateway serves the route); the
-- sandbox payment-worker reads it when it sends that payout to the simulator.

CREATE TABLE sandbox_payout_scenarios (
    key_id          text NOT NULL,
    request_id      text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('SUCCESS', 'FAILED', 'RETURNED')),
    reason          text,
    result_delay_ms integer NOT NULL CHECK (result_delay_ms BETWEEN 0 AND 60000),
    result_copies   smallint NOT NULL CHECK (result_copies IN (1, 2)),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, request_id)
);
