"""fundhub."""
