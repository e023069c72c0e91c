"""The bank's key rotation: a notification verifies under any key of its app, until removed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from e2e.conftest import Stack
from fundhub.bank_simulator.notifications import TransferSpec, build_notification
from fundhub.common.signing import generate_rsa_keypair


def notice(stack: Stack, private_pem: str) -> dict[str, str]:
    spec = TransferSpec(
        record_id=f"rot-{uuid.uuid4().hex[:12]}", in_acct_no="6222000666001", trans_amount=100
    )
    return build_notification(spec, stack.env.app_id, private_pem)


def pem_file(stack: Stack, public_pem: str) -> str:
    path = stack.env.tmp / f"key-{uuid.uuid4().hex}.pem"
    path.write_text(public_pem)
    return str(path)


async def test_notifications_verify_under_any_key_of_the_app_until_it_is_removed(
    stack: Stack,
) -> None:
    env = stack.env
    old_private = env.bank.private_pem
    new_private, new_public = generate_rsa_keypair()
    stranger_private, _ = generate_rsa_keypair()
    assert (await stack.post(notice(stack, old_private))).text == "success"

    added = json.loads(
        env.cli("bank-app", "add-key", "--app-id", env.app_id,
                "--public-key", pem_file(stack, new_public), "--json")
    )  # fmt: skip
    assert added["added"] is True
    listed = json.loads(env.cli("bank-app", "keys", "--app-id", env.app_id, "--json"))
    assert [k["role"] for k in listed] == ["registered", "added"]
    old_fp = listed[0]["fingerprint"]

    async def accepted(private_pem: str) -> bool:
        return (await stack.post(notice(stack, private_pem))).text == "success"

    # The gateway's app cache (10 s) picks the new key up; then both keys verify.
    deadline = time.monotonic() + 15
    while not await accepted(new_private):
        assert time.monotonic() < deadline, "the added key is never trusted"
        await asyncio.sleep(0.5)
    assert await accepted(old_private)
    assert not await accepted(stranger_private)

    # The bank has switched: the old key goes; the added one takes its place.
    env.cli("bank-app", "remove-key", "--app-id", env.app_id, "--fingerprint", old_fp)
    deadline = time.monotonic() + 15
    while await accepted(old_private):
        assert time.monotonic() < deadline, "the removed key is still trusted"
        await asyncio.sleep(0.5)
    assert await accepted(new_private)
    listed = json.loads(env.cli("bank-app", "keys", "--app-id", env.app_id, "--json"))
    assert [k["role"] for k in listed] == ["registered"] and listed[0]["fingerprint"] != old_fp


def test_the_last_key_of_an_app_cannot_be_removed(stack: Stack) -> None:
    import subprocess

    from support.env import BIN

    env = stack.env
    (only,) = json.loads(env.cli("bank-app", "keys", "--app-id", env.app_id, "--json"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "fundhub"), *args], env=env.environ(), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    last = run(
        "bank-app", "remove-key", "--app-id", env.app_id, "--fingerprint", only["fingerprint"]
    )
    assert last.returncode == 2 and "last key" in last.stderr
    unknown = run("bank-app", "remove-key", "--app-id", env.app_id, "--fingerprint", "0" * 16)
    assert unknown.returncode == 2 and "has no key" in unknown.stderr
    no_app = run("bank-app", "keys", "--app-id", "nope")
    assert no_app.returncode == 2 and "no bank app" in no_app.stderr
