"""The process's one connection pool to the bank, with its TLS: every adapter of every context
that calls the bank is given this session by its composition root."""

from __future__ import annotations

import ssl

import aiohttp

from fundhub.common.config import Settings


def bank_tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext:
    """TLS towards the bank: TLS 1.2 or later, the bank's CA (else the system's), and our
    client certificate when the bank asks for mutual TLS."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def bank_session(settings: Settings) -> aiohttp.ClientSession:
    """The pool, with the TLS of ``FUNDHUB_BANK_TLS_*`` (used only for an ``https://`` bank
    URL). Idle connections are let go after 2 s, before the bank's own keep-alive ends."""
    context = bank_tls_context(
        settings.bank_tls_ca, settings.bank_tls_certfile, settings.bank_tls_keyfile
    )
    connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=2.0, ssl=context)
    return aiohttp.ClientSession(connector=connector)
