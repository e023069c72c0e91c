"""HAProxy (Debian's package, unpacked into ``.tools``) in front of gateway replicas, configured
from ``deploy/haproxy/haproxy.cfg.template`` and run as a process of the test."""

from __future__ import annotations

import asyncio
import os
import signal
import string
import subprocess
import time
from pathlib import Path

import httpx

from fundhub.cli.devstack.tools import haproxy
from support.env import ROOT
from support.processes import Service, free_port

TEMPLATE = ROOT / "deploy" / "haproxy" / "haproxy.cfg.template"
UNAVAILABLE = ROOT / "deploy" / "haproxy" / "unavailable.http"


class LoadBalancer:
    """Round robin over ``backends``; a backend whose ``/readyz`` fails twice is skipped."""

    def __init__(self, backends: list[Service], directory: Path) -> None:
        self.port = free_port()
        self.backends = backends
        self.config = directory / f"haproxy-{self.port}.cfg"
        self.log_path = directory / f"haproxy-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def render(self) -> str:
        servers = "\n".join(
            f"    server {b.name}-{i} 127.0.0.1:{b.port}" for i, b in enumerate(self.backends)
        )
        return string.Template(TEMPLATE.read_text()).substitute(
            port=self.port, servers=servers, unavailable=UNAVAILABLE
        )

    def start(self) -> None:
        binary = haproxy()
        self.config.write_text(self.render())
        check = subprocess.run(
            [str(binary), "-c", "-f", str(self.config)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "-db", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until a request through it reaches a gateway."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    if (await client.get(f"{self.url}/healthz", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"HAProxy not serving in {timeout_s}s: {self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
