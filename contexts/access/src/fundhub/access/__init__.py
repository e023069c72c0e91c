"""The access context: who may call the API (keys, scopes, accounts) and request nonces."""
