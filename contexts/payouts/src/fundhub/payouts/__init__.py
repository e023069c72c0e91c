"""fundhub.payouts."""
