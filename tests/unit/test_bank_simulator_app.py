"""The control API and the command line, with the network replaced by local stubs.

These exercise the simulator's own plumbing (planning, phases, progress, metrics, flags);
the gateway's handling of the notices is tested elsewhere against the real thing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from support.receivers import ThreadedReceiver

from fundhub.bank_simulator import main as cli
from fundhub.bank_simulator.app import create_app
from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.common.signing import generate_rsa_keypair, load_public_key, rsa2_verify


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_rsa_keypair()


class StubServer(ThreadedReceiver):
    """A threaded local HTTP stub: checks each notice's signature when given a public key,
    records it, and answers with ``answer`` (``success`` by default)."""

    def __init__(self, public_pem: str | None = None, answer: str = "success") -> None:
        self.public = load_public_key(public_pem) if public_pem else None
        self.reply = answer
        self.notices: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        super().__init__()

    def answer(self, path: str, params: dict[str, Any]) -> str:
        valid = self.public is None or rsa2_verify(params, params["sign"], self.public)
        with self.lock:
            self.paths.append(path)
            self.notices.append(params)
        return self.reply if valid else "fail: bad signature"


@pytest.fixture
def stubs() -> Iterator[list[StubServer]]:
    started: list[StubServer] = []
    yield started
    for stub in started:
        stub.close()


def wait_done(client: TestClient, scenario_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/scenarios/{scenario_id}").json()
        if body["status"] in {"done", "failed", "cancelled"}:
            return body
        time.sleep(0.02)
    raise AssertionError("scenario did not finish")


def test_scenario_runs_in_phases_and_reports_progress(
    keys: tuple[str, str], stubs: list[StubServer]
) -> None:
    private_pem, public_pem = keys
    stub = StubServer(public_pem)
    stubs.append(stub)
    config = SimulatorConfig(gateway_url=stub.url, private_key_pem=private_pem)
    with TestClient(create_app(config)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200

        started = client.post(
            "/scenarios/transfers",
            json={
                "count": 20,
                "accountCount": 2,
                "duplicates": 2,
                "lifecycle": True,
                "seed": 1,
                "concurrency": 4,
            },
        )
        assert started.status_code == 202
        scenario_id = started.json()["scenarioId"]
        assert started.json()["planned"] == 20 * 3 * 2

        done = wait_done(client, scenario_id)
        assert done["status"] == "done", done
        assert (done["sent"], done["succeeded"], done["failed"]) == (120, 120, 0)
        assert [p["phase"] for p in done["phases"]] == ["arrivals", "processing", "deducted"]
        assert done["seed"] == 1
        assert any(run["scenarioId"] == scenario_id for run in client.get("/scenarios").json())

        metrics = client.get("/metrics").text
        assert 'fundhub_bank_simulator_notifications_sent_total{outcome="success"}' in metrics
        assert "fundhub_bank_simulator_retries_total" in metrics

    assert set(stub.paths) == {"/callbacks/bank"}
    biz = [json.loads(p["biz_content"]) for p in stub.notices]
    assert len(biz) == 120
    assert {b["in_acct_no"] for b in biz} <= {"6222020000000001", "6222020000000002"}
    assert all(b["record_id"].startswith(scenario_id) for b in biz)
    for record_id in {b["record_id"] for b in biz}:
        statuses = [b["deduct_status"] for b in biz if b["record_id"] == record_id]
        assert statuses == ["0", "0", "6", "6", "1", "1"]


def test_scenario_requests_are_validated(keys: tuple[str, str]) -> None:
    private_pem, _ = keys
    config = SimulatorConfig(gateway_url="http://127.0.0.1:9", private_key_pem=private_pem)
    with TestClient(create_app(config)) as client:
        for body in (
            {"count": 0},
            {"count": 1, "minAmount": 10, "maxAmount": 5},
            {"count": 1, "reversalRate": 2},
            {"count": 1, "surprise": True},
            {"count": 1, "accounts": []},
            {"count": 1, "recordPrefix": "no spaces"},
        ):
            assert client.post("/scenarios/transfers", json=body).status_code == 422, body
        assert client.get("/scenarios/S-unknown").status_code == 404


def test_failed_deliveries_are_counted(keys: tuple[str, str], stubs: list[StubServer]) -> None:
    private_pem, _ = keys
    stub = StubServer(answer="fail: not today")
    stubs.append(stub)
    config = SimulatorConfig(
        gateway_url=stub.url, private_key_pem=private_pem, retries=1, retry_interval_s=0.0
    )
    with TestClient(create_app(config)) as client:
        scenario_id = client.post(
            "/scenarios/transfers", json={"count": 3, "reversalRate": 1.0}
        ).json()["scenarioId"]
        done = wait_done(client, scenario_id)

    assert done["status"] == "done"
    assert (done["sent"], done["succeeded"], done["failed"], done["retries"]) == (6, 0, 6, 6)
    assert [p["phase"] for p in done["phases"]] == ["arrivals", "reversals"]


def test_app_refuses_a_bad_key() -> None:
    with pytest.raises(ValueError):
        create_app(SimulatorConfig(gateway_url="http://x", private_key_pem="not a key"))


@pytest.fixture
def quiet_cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Leave the test process's logging configuration as it was."""
    monkeypatch.setattr(cli, "configure_logging", lambda *_: None)
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("quiet_cli")
def test_keygen_then_send_once(
    tmp_path: Path, stubs: list[StubServer], capsys: pytest.CaptureFixture[str]
) -> None:
    stub = StubServer()
    stubs.append(stub)
    assert cli.main(["keygen", "--out-dir", str(tmp_path)]) == 0
    private_file = tmp_path / cli.PRIVATE_KEY_NAME
    assert private_file.stat().st_mode & 0o077 == 0
    capsys.readouterr()

    code = cli.main(
        [
            "send",
            "--gateway-url",
            stub.url,
            "--private-key-file",
            str(private_file),
            "--count",
            "5",
            "--duplicates",
            "2",
            "--seed",
            "3",
            "--record-prefix",
            "CLI",
        ]
    )
    tally = json.loads(capsys.readouterr().out)

    assert code == 0
    assert tally["status"] == "done"
    assert (tally["planned"], tally["succeeded"], tally["failed"]) == (10, 10, 0)
    public = load_public_key((tmp_path / cli.PUBLIC_KEY_NAME).read_text())
    assert len(stub.notices) == 10
    assert all(rsa2_verify(p, p["sign"], public) for p in stub.notices)
    records = {json.loads(p["biz_content"])["record_id"] for p in stub.notices}
    assert records == {f"CLI{n:08d}" for n in range(1, 6)}


@pytest.mark.usefixtures("quiet_cli")
def test_send_exits_nonzero_when_deliveries_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main(["keygen", "--out-dir", str(tmp_path)])
    capsys.readouterr()
    # Options given before the subcommand hold too.
    code = cli.main(
        [
            "--gateway-url",
            "http://127.0.0.1:9",
            "--retries",
            "0",
            "send",
            "--private-key-file",
            str(tmp_path / cli.PRIVATE_KEY_NAME),
            "--count",
            "2",
        ]
    )
    tally = json.loads(capsys.readouterr().out)

    assert code == 1
    assert (tally["failed"], tally["retries"]) == (2, 0)


@pytest.mark.usefixtures("quiet_cli")
def test_send_without_a_key_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.KEY_FILE_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["send", "--count", "1"])
    assert exit_info.value.code == 2
