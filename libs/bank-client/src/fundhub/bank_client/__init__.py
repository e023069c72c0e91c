"""Calling the bank: ``session`` (the connection pool and its TLS) and ``exchange`` (one retried
JSON request and how its reply is read). Each context keeps its own protocol (paths, wire
forms, answers, refusals) next to its domain; only the HTTP is here."""
