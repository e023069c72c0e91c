"""fundhub.merchants."""
