"""fundhub.settlement."""
