"""Run the services as child processes, their output prefixed with their names.

A service that exits on its own is started again after a pause that doubles with each exit in
a row (``restart_base_s`` up to ``restart_max_s``; the count resets once it has stayed up for
``stable_s``), so one crash (or a dependency away for a while) does not stop the others. On
Ctrl-C / SIGTERM every child is stopped, newest first (SIGTERM to its process group, SIGKILL
after a grace period). A second Ctrl-C skips the grace period. With ``restart=False`` it is
like foreman: the first exit stops everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

_COLORS = ("36", "33", "35", "32", "34", "31")
_LINE_LIMIT = 1 << 20


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    url: str | None = None  # where it listens, to tell the operator


@dataclass
class _Child:
    spec: ServiceSpec
    proc: asyncio.subprocess.Process
    pump: asyncio.Task[None]


@dataclass
class Supervisor:
    specs: Sequence[ServiceSpec]
    out: TextIO = field(default_factory=lambda: sys.stdout)
    grace_s: float = 10.0
    restart: bool = True
    restart_base_s: float = 0.5
    restart_max_s: float = 30.0
    stable_s: float = 60.0
    _children: list[_Child] = field(default_factory=list, init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _hurry: bool = field(default=False, init=False)
    _failed: str | None = field(default=None, init=False)
    restarts: dict[str, int] = field(default_factory=dict, init=False)

    def _prefix(self, name: str) -> str:
        names = [s.name for s in self.specs]
        width = max(map(len, names), default=len(name))
        label = f"{name:<{width}} |"
        if not self.out.isatty():
            return label
        color = _COLORS[(names.index(name) if name in names else 0) % len(_COLORS)]
        return f"\x1b[{color}m{label}\x1b[0m"

    def say(self, name: str, text: str) -> None:
        prefix = self._prefix(name)
        for line in text.splitlines() or [""]:
            self.out.write(f"{prefix} {line}\n")
        self.out.flush()

    def request_stop(self) -> None:
        """First call: stop gracefully. Second call: stop without waiting."""
        if self._stop.is_set():
            self._hurry = True
        self._stop.set()

    async def _pump(self, spec: ServiceSpec, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: pass on what we have
                raw = await stream.read(_LINE_LIMIT)
            if not raw:
                return
            self.say(spec.name, raw.decode(errors="replace").rstrip("\r\n"))

    async def _spawn(self, spec: ServiceSpec) -> _Child:
        env = {**os.environ, **(spec.env or {}), "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we decide the order
            limit=_LINE_LIMIT,
        )
        assert proc.stdout is not None
        pump = asyncio.create_task(self._pump(spec, proc.stdout))
        self.say(spec.name, f"started (pid {proc.pid})")
        return _Child(spec, proc, pump)

    def restart_delay(self, failures: int) -> float:
        """The pause before the ``failures``-th restart in a row: doubling, capped."""
        return float(min(self.restart_max_s, self.restart_base_s * 2 ** max(0, failures - 1)))

    async def _watch(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            started = loop.time()
            code = await child.proc.wait()
            if self._stop.is_set():
                return
            if not self.restart:
                self._failed = child.spec.name
                self.say(child.spec.name, f"exited with code {code}; stopping the others")
                self._stop.set()
                return
            failures = 1 if loop.time() - started >= self.stable_s else failures + 1
            delay = self.restart_delay(failures)
            self.say(child.spec.name, f"exited with code {code}; restarting in {delay:.1f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(child.pump, 2.0)
            try:
                restarted = await self._spawn(child.spec)
            except OSError as exc:
                self._failed = child.spec.name
                self.say(child.spec.name, f"cannot restart {child.spec.argv[0]}: {exc}")
                self._stop.set()
                return
            # In the place of the one it replaces: the stop order stays the start order reversed.
            self._children[self._children.index(child)] = restarted
            child = restarted
            self.restarts[child.spec.name] = self.restarts.get(child.spec.name, 0) + 1

    async def _stop_child(self, child: _Child) -> None:
        proc = child.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 0.5 if self._hurry else self.grace_s)
            except TimeoutError:
                self.say(child.spec.name, "did not stop in time; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            self.say(child.spec.name, f"stopped (code {proc.returncode})")
        else:
            # The leader is gone; make sure nothing it forked is left behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(child.pump, 2.0)

    async def run(self, on_started: Callable[[], None] | None = None) -> int:
        """Start every service in order and run until one exits or a stop is requested.

        ``on_started`` is called once all are spawned. Returns 0 after a requested stop, 1 if
        a service could not be started (or, without ``restart``, exited on its own)."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.getsignal(sig) for sig in signals}
        for sig in signals:
            loop.add_signal_handler(sig, self.request_stop)
        watchers: list[asyncio.Task[None]] = []
        try:
            for spec in self.specs:
                if self._stop.is_set():
                    break
                try:
                    child = await self._spawn(spec)
                except OSError as exc:
                    self._failed = spec.name
                    self.say(spec.name, f"cannot start {spec.argv[0]}: {exc}")
                    self._stop.set()
                    break
                self._children.append(child)
                watchers.append(asyncio.create_task(self._watch(child)))
            if on_started is not None and not self._stop.is_set():
                on_started()
            await self._stop.wait()
        finally:
            for child in reversed(self._children):
                await self._stop_child(child)
            for watcher in watchers:
                watcher.cancel()
            for sig in signals:
                loop.remove_signal_handler(sig)
                handler = previous[sig]
                if handler is not None:
                    signal.signal(sig, handler)
        return 1 if self._failed else 0
