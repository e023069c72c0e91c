"""fundhub.reconciliation."""
