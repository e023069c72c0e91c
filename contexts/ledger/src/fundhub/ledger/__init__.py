"""fundhub.ledger."""
