"""fundhub.bank_transfers."""
