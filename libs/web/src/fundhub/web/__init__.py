"""fundhub.web."""
