"""API keys' lifecycle against real gateway processes: revocation heard by every replica at
once, rotation with an overlap, expiry, live and sandbox keys, and the operator's listing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from support.api import signed_get
from support.env import ModuleEnv
from support.processes import Service, gateway

from fundhub.common.signing import body_signature

PATH = "/v1/accounts/6222000555001/balance"


@pytest.fixture(scope="module")
async def replicas(env: ModuleEnv, live_env: ModuleEnv) -> AsyncIterator[list[Service]]:
    """Two gateways of one sandbox deployment (FUNDHUB_ENV=test) and one production gateway
    on the live deployment's own database."""
    services = [gateway(env), gateway(env), gateway(live_env)]
    for service in services:
        service.start()
    try:
        await asyncio.gather(*(s.wait_ready() for s in services))
        yield services
    finally:
        for service in services:
            service.stop()


async def status(url: str, key_id: str, secret: str, *, as_unknown: bool = False) -> int:
    """404 when the key is accepted (the account is unknown), 401 when refused; with
    ``as_unknown`` a refusal must read exactly like that of a key that never existed."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await signed_get(http, key_id, secret, PATH)
        if response.status_code != 401:
            # Accepted, and the answer is signed with the secret that signed the request.
            assert response.headers["X-Signature"] == body_signature(secret, response.content)
            return response.status_code
        assert response.json()["errorCode"] == "E002"
        if as_unknown:
            unknown = await signed_get(http, "ak_00000000000000000000", secret, PATH)
            assert response.json()["msg"] == unknown.json()["msg"]
            assert "X-Signature" not in response.headers
    return response.status_code


def create(env: ModuleEnv, *extra: str) -> dict[str, str]:
    out = env.cli(
        "api-key", "create", "--name", "lifecycle", "--scopes", "balance:read",
        "--accounts", "*", "--json", *extra,
    )  # fmt: skip
    created: dict[str, str] = json.loads(out)
    return created


async def test_revocation_is_refused_by_every_replica_within_a_second(
    env: ModuleEnv, replicas: list[Service]
) -> None:
    a, b, _ = replicas
    key = create(env)
    # Both replicas hold the key in their cache (30 s) before it is revoked.
    for replica in (a, b):
        assert await status(replica.url, key["keyId"], key["secret"]) == 404
    revoked = json.loads(env.cli("api-key", "revoke", key["keyId"], "--json"))
    assert revoked["state"] == "revoked"
    started = time.monotonic()
    for replica in (a, b):
        while await status(replica.url, key["keyId"], key["secret"], as_unknown=True) != 401:
            assert time.monotonic() - started < 1.0, "a replica still accepts a revoked key"
            await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    print(f"revocation refused by both replicas after {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0


async def test_rotation_keeps_both_secrets_valid_for_the_overlap(
    env: ModuleEnv, replicas: list[Service]
) -> None:
    a, b, _ = replicas
    key = create(env)
    old = key["secret"]
    assert await status(a.url, key["keyId"], old) == 404  # cached before the rotation
    rotated = json.loads(env.cli("api-key", "rotate", key["keyId"], "--overlap", "24h", "--json"))
    new = rotated["secret"]
    assert new != old and rotated["previousValidUntil"]
    await asyncio.sleep(0.3)  # the NOTIFY's round trip
    for replica in (a, b):
        assert await status(replica.url, key["keyId"], new) == 404
        assert await status(replica.url, key["keyId"], old) == 404

    # A second rotation without overlap ends every earlier secret at once.
    again = json.loads(env.cli("api-key", "rotate", key["keyId"], "--overlap", "0s", "--json"))
    await asyncio.sleep(0.3)
    for replica in (a, b):
        assert await status(replica.url, key["keyId"], again["secret"]) == 404
        assert await status(replica.url, key["keyId"], new) == 401
        assert await status(replica.url, key["keyId"], old) == 401


async def test_an_expired_key_answers_like_an_unknown_one(
    env: ModuleEnv, replicas: list[Service]
) -> None:
    a, _, _ = replicas
    key = create(env, "--expires-in", "2s")
    assert await status(a.url, key["keyId"], key["secret"]) == 404
    await asyncio.sleep(2.2)
    assert await status(a.url, key["keyId"], key["secret"], as_unknown=True) == 401


async def test_live_and_sandbox_keys_work_only_in_their_environment(
    env: ModuleEnv, live_env: ModuleEnv, replicas: list[Service]
) -> None:
    test_gw, _, prod_gw = replicas
    sandbox = create(env)  # FUNDHUB_ENV=test: sandbox by default
    live = create(live_env)  # FUNDHUB_ENV=prod: live by default
    assert sandbox["environment"] == "sandbox" and live["environment"] == "live"
    # A live key in the sandbox's database is refused there all the same (access.keys).
    stray = create(env, "--env", "live")
    assert await status(test_gw.url, stray["keyId"], stray["secret"], as_unknown=True) == 401
    assert await status(test_gw.url, sandbox["keyId"], sandbox["secret"]) == 404
    assert await status(test_gw.url, live["keyId"], live["secret"], as_unknown=True) == 401
    assert await status(prod_gw.url, live["keyId"], live["secret"]) == 404
    assert await status(prod_gw.url, sandbox["keyId"], sandbox["secret"], as_unknown=True) == 401


def test_list_shows_state_environment_and_overlaps_without_secrets(env: ModuleEnv) -> None:
    active = create(env, "--expires-at", "2099-01-01T00:00:00Z")
    revoked = create(env)
    env.cli("api-key", "revoke", revoked["keyId"])
    rotated = create(env, "--env", "live")
    new = json.loads(
        env.cli("api-key", "rotate", rotated["keyId"], "--webhook", "--overlap", "1h", "--json")
    )
    out = env.cli("api-key", "list", "--json")
    for created in (active, revoked, rotated):
        assert created["secret"] not in out and created["webhookSecret"] not in out
    assert new["webhookSecret"] not in out
    listed = {k["keyId"]: k for k in json.loads(out)}
    assert listed[active["keyId"]]["state"] == "active"
    assert listed[active["keyId"]]["expiresAt"] == "2099-01-01T00:00:00Z"
    assert listed[revoked["keyId"]]["state"] == "revoked"
    assert listed[rotated["keyId"]]["environment"] == "live"
    old = [s for s in listed[rotated["keyId"]]["secrets"] if not s["current"]]
    assert [s["kind"] for s in old] == ["webhook"] and old[0]["validUntil"]
    table = env.cli("api-key", "list")
    assert revoked["keyId"] in table and "revoked" in table


def test_cli_refusals_are_clear(env: ModuleEnv) -> None:
    import subprocess

    from support.env import BIN

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "fundhub"), *args], env=env.environ(), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    missing = run("api-key", "revoke", "ak_nope")
    assert missing.returncode == 1 and "no API key 'ak_nope'" in missing.stderr
    bad = run("api-key", "rotate", "ak_nope", "--overlap", "a day")
    assert bad.returncode == 2 and "--overlap" in bad.stderr
    both = run(
        "api-key", "create", "--name", "x", "--scopes", "admin", "--accounts", "*",
        "--expires-in", "1d", "--expires-at", "2099-01-01T00:00:00Z",
    )  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr
