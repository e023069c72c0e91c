-- Bank transfers: the addresses a bank app's notifications may come from (empty: any). Checked
-- after the signature, so a stolen signing key is not enough from elsewhere.

ALTER TABLE bank_apps ADD COLUMN allowed_cidrs cidr[] NOT NULL DEFAULT '{}';
