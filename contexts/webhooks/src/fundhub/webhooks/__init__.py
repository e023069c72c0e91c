"""fundhub.webhooks."""
