"""How the dev stack explains a server that died while starting (devstack.processes, kafka)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fundhub.cli.devstack import processes
from fundhub.cli.devstack.kafka import KafkaNode, KafkaNodeError


def _ended(code: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    proc.wait(10)
    return proc


def test_an_exit_code_and_a_signal_are_told_apart() -> None:
    assert processes.exit_status(_ended(3)) == "exit code 3"
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    assert processes.exit_status(killed) == "killed by SIGKILL"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_broker_killed_while_starting_says_so(tmp_path: Path) -> None:
    """A broker SIGKILLed before it logs a line left an empty output and nothing to go on."""
    node = KafkaNode(home=tmp_path, deploy=tmp_path, port=_closed_port())
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    processes.write_pid(node.pid_file, victim.pid)
    node._proc = victim
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    with pytest.raises(KafkaNodeError, match=r"exited while starting \(killed by SIGKILL\)"):
        node.wait_ready(timeout_s=5)


class _Reaped:
    """A child of ours that has ended, whose pid the kernel has since given to another."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int:
        return -9


def test_a_reaped_broker_s_pid_is_not_taken_for_a_live_broker(tmp_path: Path) -> None:
    """After a pid wraps, a dead node's pid file may name another test's broker: stopping or
    killing this node must not reach it."""
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "kafka.Kafka"],
    )
    try:
        node = KafkaNode(home=tmp_path, deploy=tmp_path, port=_closed_port())
        processes.write_pid(node.pid_file, other.pid)
        assert node.pid() == other.pid  # a broker this node did not start, found by its file
        node._proc = _Reaped(other.pid)  # type: ignore[assignment]
        assert node.pid() is None
        assert node.kill() is False and other.poll() is None
    finally:
        other.kill()
        other.wait(10)
