"""fundhub.audit_writer."""
