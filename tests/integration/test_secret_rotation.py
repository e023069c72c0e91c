"""Rotating what seals and signs: webhook secrets (the dispatcher signs with the current one)
and the master key (every stored secret re-sealed in one transaction, services reading both
keys during the rollout)."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
from support.api import signed_get
from support.env import BIN, ModuleEnv
from support.processes import gateway

from fundhub.client import HEADER_SIGNATURE, HEADER_TIMESTAMP, SignatureMismatch, verify_callback
from fundhub.common.sealing import generate_master_key, sealed_by, unseal
from fundhub.webhooks.policy import signed_headers
from fundhub.webhooks.sender import WebhookSecrets

BODY = b'{"payId":"P1","bizCode":"SUCCESS"}'


def fundhub(env: ModuleEnv, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fundhub"), *args],
        env=env.environ(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create_key(env: ModuleEnv) -> dict[str, str]:
    out = env.cli(
        "api-key", "create", "--name", "rot", "--scopes", "balance:read", "--accounts", "*",
        "--json",
    )  # fmt: skip
    created: dict[str, str] = json.loads(out)
    return created


async def test_callbacks_are_signed_with_the_current_webhook_secret(env: ModuleEnv) -> None:
    key = create_key(env)
    old = key["webhookSecret"]
    assert env.settings.master_key is not None
    secrets = WebhookSecrets(env.pool, env.settings.master_keys(), ttl_s=0.0)
    assert await secrets.get(key["keyId"]) == old

    rotated = json.loads(
        env.cli("api-key", "rotate", key["keyId"], "--webhook", "--overlap", "24h", "--json")
    )
    new = rotated["webhookSecret"]
    assert await secrets.get(key["keyId"]) == new
    headers = signed_headers(new, BODY, 1_800_000_000)
    stamp, signature = headers[HEADER_TIMESTAMP], headers[HEADER_SIGNATURE]
    # What a client sees during the overlap: callbacks signed with the new secret only. A
    # client that holds both accepts them; one still holding only the old secret refuses them
    # (answers non-2xx) and the dispatcher retries until it has the new one: late, not lost.
    assert verify_callback([old, new], stamp, signature, BODY, now=1_800_000_000)
    assert verify_callback(new, stamp, signature, BODY, now=1_800_000_000)
    with pytest.raises(SignatureMismatch):
        verify_callback(old, stamp, signature, BODY, now=1_800_000_000)
    # The API secret is untouched by a webhook rotation.
    api = await env.pool.fetchval(
        "SELECT secret_sealed FROM api_keys WHERE key_id = $1", key["keyId"]
    )
    assert unseal(bytes(api), env.settings.master_keys()).decode() == key["secret"]

    # A revoked key's callbacks are no longer signed.
    env.cli("api-key", "revoke", key["keyId"])
    assert await secrets.get(key["keyId"]) is None


async def _blobs(env: ModuleEnv) -> list[bytes]:
    rows = await env.pool.fetch(
        "SELECT secret_sealed AS b FROM api_keys UNION ALL"
        " SELECT webhook_secret_sealed FROM api_keys WHERE webhook_secret_sealed IS NOT NULL"
        " UNION ALL SELECT secret_sealed FROM api_key_retiring_secrets"
    )
    return [bytes(r["b"]) for r in rows]


async def test_master_key_rotation_reseals_every_secret_in_one_go(env: ModuleEnv) -> None:
    old = env.settings.master_key
    assert old is not None
    first, second = create_key(env), create_key(env)
    env.cli("api-key", "rotate", second["keyId"], "--overlap", "1h")  # a retiring secret too
    before = [unseal(b, old) for b in await _blobs(env)]
    new = generate_master_key()

    # Without the previous key nothing opens: refused, nothing changed.
    refused = fundhub(env, "master-key", "rotate", "--json", FUNDHUB_MASTER_KEY=new)
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr
    assert old not in refused.stderr and new not in refused.stderr
    assert all(sealed_by(b, old) for b in await _blobs(env))

    done = fundhub(
        env, "master-key", "rotate", "--json",
        FUNDHUB_MASTER_KEY=new, FUNDHUB_MASTER_KEY_PREVIOUS=old,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    blobs = await _blobs(env)
    assert json.loads(done.stdout) == {"resealed": len(blobs)}
    assert all(sealed_by(b, new) for b in blobs)
    assert sorted(unseal(b, new) for b in blobs) == sorted(before)

    # A gateway given only the new key serves the keys; so does one in the middle of the
    # rollout (new and previous), and a request signed with the key's secret is accepted.
    for extra in (
        {"FUNDHUB_MASTER_KEY": new},
        {"FUNDHUB_MASTER_KEY": new, "FUNDHUB_MASTER_KEY_PREVIOUS": old},
    ):
        service = gateway(env)
        service.extra_env.update(extra)
        service.start()
        try:
            await service.wait_ready()
            async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
                answer = await signed_get(
                    http, first["keyId"], first["secret"], "/v1/accounts/A1/balance"
                )
            assert answer.status_code == 404, answer.text  # accepted; the account is unknown
        finally:
            service.stop()
