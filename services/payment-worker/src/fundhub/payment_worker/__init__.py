"""fundhub payment-worker: drives supplier payouts to a final state."""
