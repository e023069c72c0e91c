"""fundhub.audit: the audit log (who asked what, from where, and what was answered)."""
