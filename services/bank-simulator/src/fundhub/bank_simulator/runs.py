"""One transfer scenario from request to tally: plan, sign ahead, send phase by phase.

Shared by the control API (runs in the background, polled for progress) and the one-shot
``send`` command (runs in the foreground, prints the tally).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from fundhub.bank_simulator.notifications import PrivateKey, build_many
from fundhub.bank_simulator.scenarios import Phase, demo_accounts, plan_transfers
from fundhub.bank_simulator.sender import BankSender, Delivery
from fundhub.common.clock import iso_utc, utcnow

_SIGN_CHUNK = 500


class TransferScenarioRequest(BaseModel):
    """``POST /scenarios/transfers`` (camelCase on the wire) and the ``send`` command's flags."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    count: int = Field(ge=1, le=1_000_000, description="Distinct transfer records.")
    accounts: list[str] | None = Field(
        default=None, min_length=1, description="Receiving accounts; default: accountCount."
    )
    account_count: int = Field(default=5, ge=1, le=100_000)
    min_amount: int = Field(default=100, ge=1, description="Fen.")
    max_amount: int = Field(default=100_000, ge=1, description="Fen.")
    duplicates: int = Field(default=1, ge=1, le=20, description="Copies sent of each notice.")
    lifecycle: bool = Field(default=False, description="Also send status 6, then 1.")
    reversal_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int | None = Field(default=None, description="Default: a random seed, reported.")
    concurrency: int = Field(default=32, ge=1, le=2_000)
    record_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9]{1,20}$",
        description="Record id prefix; default: the scenario id (new records every run).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min_amount > self.max_amount:
            raise ValueError("minAmount must not exceed maxAmount")
        for account in self.accounts or ():
            if not 0 < len(account) <= 32:
                raise ValueError("each account number has 1 to 32 characters")
        return self


class RunStatus(StrEnum):
    QUEUED = "queued"
    SIGNING = "signing"
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


def new_scenario_id() -> str:
    return "S" + secrets.token_hex(5)


@dataclass(slots=True)
class ScenarioRun:
    """Progress of one scenario; ``to_json`` is what ``GET /scenarios/{id}`` answers."""

    id: str
    request: TransferScenarioRequest
    seed: int
    phases: list[Phase]
    status: RunStatus = RunStatus.QUEUED
    signed: int = 0
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    phase: str | None = None
    sign_seconds: float = 0.0
    send_seconds: float = 0.0
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    error: str | None = None
    phase_reports: list[dict[str, Any]] = field(default_factory=list)
    send_started: float | None = None  # perf_counter while sending, for live progress

    @property
    def planned(self) -> int:
        return sum(len(phase.specs) for phase in self.phases)

    def record(self, delivery: Delivery) -> None:
        self.sent += 1
        self.retries += delivery.attempts - 1
        if delivery.ok:
            self.succeeded += 1
        else:
            self.failed += 1

    def to_json(self) -> dict[str, Any]:
        send_seconds = self.send_seconds
        if self.status is RunStatus.SENDING and self.send_started is not None:
            send_seconds = time.perf_counter() - self.send_started
        return {
            "scenarioId": self.id,
            "status": self.status.value,
            "seed": self.seed,
            "phase": self.phase,
            "planned": self.planned,
            "signed": self.signed,
            "sent": self.sent,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retries": self.retries,
            "signSeconds": round(self.sign_seconds, 3),
            "sendSeconds": round(send_seconds, 3),
            "perSecond": round(self.sent / send_seconds, 1) if send_seconds else 0.0,
            "phases": self.phase_reports,
            "createdAt": iso_utc(self.created_at),
            "finishedAt": iso_utc(self.finished_at) if self.finished_at else None,
            "error": self.error,
            "request": self.request.model_dump(by_alias=True, exclude_none=True),
        }


def plan_run(request: TransferScenarioRequest, scenario_id: str | None = None) -> ScenarioRun:
    """Fix the scenario's notices now (pure apart from the id, the seed and the clock)."""
    run_id = scenario_id or new_scenario_id()
    seed = request.seed if request.seed is not None else secrets.randbits(32)
    phases = plan_transfers(
        random.Random(seed),
        request.count,
        request.accounts or demo_accounts(request.account_count),
        request.min_amount,
        request.max_amount,
        duplicates=request.duplicates,
        lifecycle=request.lifecycle,
        reversal_rate=request.reversal_rate,
        record_prefix=request.record_prefix or run_id,
        at=utcnow(),
    )
    return ScenarioRun(id=run_id, request=request, seed=seed, phases=phases)


async def execute_run(run: ScenarioRun, sender: BankSender, app_id: str, key: PrivateKey) -> None:
    """Sign every phase first (off the event loop), then send the phases one after another.

    Signing ahead keeps the send rate a measure of the gateway, not of RSA; a phase starts
    only when the previous one is fully delivered or given up on, so a record's 6 never
    overtakes its 0. Never raises but for cancellation: failures end up in ``run.error``.
    """
    try:
        run.status = RunStatus.SIGNING
        started = time.perf_counter()
        signed_phases: list[list[dict[str, str]]] = []
        for phase in run.phases:
            batch: list[dict[str, str]] = []
            for start in range(0, len(phase.specs), _SIGN_CHUNK):
                chunk = phase.specs[start : start + _SIGN_CHUNK]
                batch.extend(await asyncio.to_thread(build_many, chunk, app_id, key))
                run.signed += len(chunk)
            signed_phases.append(batch)
        run.sign_seconds = time.perf_counter() - started
        run.status = RunStatus.SENDING
        run.send_started = started = time.perf_counter()
        for phase, batch in zip(run.phases, signed_phases, strict=True):
            run.phase = phase.name
            report = await sender.send_all(batch, run.request.concurrency, on_delivery=run.record)
            run.send_seconds = time.perf_counter() - started
            run.phase_reports.append({"phase": phase.name, **report.summary()})
        run.status = RunStatus.DONE
    except asyncio.CancelledError:
        run.status = RunStatus.CANCELLED
        raise
    except Exception as exc:  # reported through the run, the service keeps going
        run.status = RunStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        run.phase = None
        run.finished_at = utcnow()


class RunRegistry:
    """The recent runs (oldest forgotten first) and the tasks that drive them."""

    def __init__(self, keep: int = 200) -> None:
        self._runs: OrderedDict[str, ScenarioRun] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._keep = keep

    def start(self, run: ScenarioRun, sender: BankSender, app_id: str, key: PrivateKey) -> None:
        self._runs[run.id] = run
        while len(self._runs) > self._keep:
            self._runs.popitem(last=False)
        task = asyncio.create_task(execute_run(run, sender, app_id, key), name=f"run-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def get(self, run_id: str) -> ScenarioRun | None:
        return self._runs.get(run_id)

    def recent(self) -> list[ScenarioRun]:
        return list(reversed(self._runs.values()))

    async def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
