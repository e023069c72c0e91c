"""fundhub.channels."""
