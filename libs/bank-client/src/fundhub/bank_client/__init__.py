"""Calling the bank: ``session`` (the connection pool and its TLS), ``exchange`` (one retried
JSON request and how its reply is read) and ``refusal`` (what every refusal of the bank carries,
no I/O). Each context keeps its own protocol (paths, wire forms, answers, its own refusal types)
next to its domain; only the HTTP and the bank's common wording of a refusal are here."""
