-- The environment a database serves: 'live' or 'sandbox', claimed by the first gateway or
-- payment-worker that starts on it and never changed after. Live and sandbox state are kept in
-- separate databases (and topic namespaces); the stamp makes a service of the other environment
-- refuse to start on this one, so sandbox rows never reach a live process nor the other way.

CREATE TABLE environment_stamp (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    environment text NOT NULL CHECK (environment IN ('live', 'sandbox')),
    claimed_by  text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);
