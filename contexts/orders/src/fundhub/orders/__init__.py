"""fundhub.orders."""
