"""fundhub.reconciler."""
