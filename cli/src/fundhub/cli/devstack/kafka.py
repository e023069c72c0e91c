"""A KRaft Kafka node (broker and controller) run from Maven Central jars under ``.data/kafka``;
one alone, or one of a cluster on this machine (``kafka_cluster``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import shutil
import string
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fundhub.cli.devstack import processes
from fundhub.cli.devstack.blocking import run_sync
from fundhub.cli.devstack.endpoints import HostPort, tcp_reachable
from fundhub.cli.devstack.paths import data_dir, deploy_dir
from fundhub.common.topics import min_insync_replicas

DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
_JARS_MARKER = ".complete"


class KafkaNodeError(RuntimeError):
    pass


def new_cluster_id() -> str:
    """16 random bytes as URL-safe base64 without padding, like Kafka's own ``Uuid``."""
    while True:
        value = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        if not value.startswith("-"):  # Kafka refuses ids that look like a command-line flag
            return value


@dataclass
class KafkaNode:
    """A broker+controller. Runs detached (own session) so Ctrl-C reaches only us.

    Alone by default; in a cluster, ``voters`` names every node's controller
    (``id@host:port,...``) and ``replicas`` is the cluster's size (internal topics, defaults)."""

    home: Path
    deploy: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    controller_port: int = DEFAULT_CONTROLLER_PORT
    node_id: int = 1
    heap_min: str = "256m"
    heap_max: str = "768m"
    # Where the broker's jars are kept (default ``home/libs``): a second node of the same
    # checkout (a test's own broker) shares them instead of fetching them again.
    jars: Path | None = None
    voters: str | None = None
    replicas: int = 1
    # More JVM flags (a test's short-lived nodes start quicker on C1 alone).
    jvm_options: tuple[str, ...] = ()
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> HostPort:
        return HostPort(self.host, self.port)

    @property
    def bootstrap(self) -> str:
        return str(self.address)

    @property
    def libs_dir(self) -> Path:
        return self.jars if self.jars is not None else self.home / "libs"

    @property
    def log_dir(self) -> Path:
        """Kafka's ``log.dirs``: the topic data itself."""
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        """The broker's own log files."""
        return self.home / "logs"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def out_file(self) -> Path:
        return self.home / "kafka.out"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster.id"

    # -- preparation ------------------------------------------------------------------------

    def _pom_digest(self) -> str:
        return hashlib.sha256((self.deploy / "pom.xml").read_bytes()).hexdigest()

    def jars_ready(self) -> bool:
        marker = self.libs_dir / _JARS_MARKER
        return marker.is_file() and marker.read_text(encoding="ascii").strip() == self._pom_digest()

    def ensure_jars(self) -> None:
        """Resolve the broker's classpath with Maven, once per version of the pom."""
        if self.jars_ready():
            return
        pom = self.deploy / "pom.xml"
        marker = self.libs_dir / _JARS_MARKER
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaNodeError(
                "Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven "
                "openjdk-17-jre-headless"
            )
        if self.libs_dir.exists():
            shutil.rmtree(self.libs_dir)
        self.libs_dir.mkdir(parents=True)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs_dir}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaNodeError(
                f"mvn could not fetch the Kafka jars (exit {result.returncode}):\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        if not any(self.libs_dir.glob("kafka_2.13-*.jar")):
            raise KafkaNodeError(f"mvn finished but no kafka jar is in {self.libs_dir}")
        marker.write_text(self._pom_digest() + "\n", encoding="ascii")

    def render_config(self) -> Path:
        template = (self.deploy / "server.properties.template").read_text(encoding="utf-8")
        rendered = string.Template(template).substitute(
            node_id=self.node_id,
            host=self.host,
            port=self.port,
            controller_port=self.controller_port,
            log_dirs=str(self.log_dir),
            voters=self.voters or f"{self.node_id}@{self.host}:{self.controller_port}",
            replicas=self.replicas,
            min_isr=min_insync_replicas(self.replicas),
        )
        self.config_file.write_text(rendered, encoding="utf-8")
        return self.config_file

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise KafkaNodeError("Java 17+ is needed for Kafka 4: apt-get install openjdk-17-jre")
        return java

    def _classpath(self) -> str:
        return f"{self.libs_dir}/*"

    def ensure_formatted(self) -> None:
        """Format the KRaft metadata log once; the cluster id is kept beside the data."""
        if (self.log_dir / "meta.properties").is_file():
            return
        if self.cluster_id_file.is_file():
            cluster_id = self.cluster_id_file.read_text(encoding="ascii").strip()
        else:
            cluster_id = new_cluster_id()
            self.cluster_id_file.write_text(cluster_id + "\n", encoding="ascii")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self._java(),
            "-Xmx256m",
            "-cp",
            self._classpath(),
            *self._logging_options(),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.config_file),
            "--ignore-formatted",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaNodeError(
                f"formatting Kafka storage failed (exit {result.returncode}):\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )

    def _logging_options(self) -> list[str]:
        return [
            f"-Dlog4j2.configurationFile={self.deploy / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
        ]

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        self.ensure_jars()
        self.render_config()
        self.ensure_formatted()

    def command(self) -> list[str]:
        """The broker's command line (for running it attached under a supervisor)."""
        return [
            self._java(),
            f"-Xms{self.heap_min}",
            f"-Xmx{self.heap_max}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            *self.jvm_options,
            *self._logging_options(),
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(self.config_file),
        ]

    # -- lifecycle --------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The pid of the broker this node started (per its pid file), if still alive."""
        pid = processes.read_pid(self.pid_file)
        if self._proc is not None:
            ended = self._proc.poll() is not None  # reaped: a dead broker is not left a zombie
            if ended and self._proc.pid == pid:
                return None  # and its pid may since be another process's (even a broker's)
        if pid is None or not processes.pid_alive(pid):
            return None
        if "kafka.Kafka" not in processes.cmdline(pid):
            return None  # the pid was reused by something else
        return pid

    def is_running(self) -> bool:
        """Something accepts connections on the broker's port."""
        return tcp_reachable(self.address)

    def start(self, *, wait: bool = True, timeout_s: float = 180.0) -> None:
        """Start the broker detached (no-op if this node's broker is already up)."""
        if self.pid() is None:
            if self.is_running():
                raise KafkaNodeError(
                    f"{self.address} is taken by a process this node did not start"
                )
            self.prepare()
            with self.out_file.open("wb") as out:
                self._proc = subprocess.Popen(
                    self.command(),
                    cwd=self.home,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            processes.write_pid(self.pid_file, self._proc.pid)
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until the broker answers a metadata request (not merely accepts TCP)."""
        deadline = time.monotonic() + timeout_s
        while True:
            managed = processes.read_pid(self.pid_file) is not None
            if managed and self.pid() is None and not self.is_running():
                how = "" if self._proc is None else f" ({processes.exit_status(self._proc)})"
                raise KafkaNodeError(
                    f"the Kafka broker exited while starting{how}; last output:\n"
                    + processes.tail(self.out_file)
                )
            if self.is_running() and run_sync(lambda: probe_kafka(self.bootstrap)):
                return
            if time.monotonic() > deadline:
                raise KafkaNodeError(
                    f"Kafka at {self.bootstrap} not ready after {timeout_s:.0f}s; "
                    f"see {self.out_file}"
                )
            time.sleep(0.5)

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Graceful shutdown (SIGTERM: controlled shutdown), SIGKILL after ``timeout_s``.

        Returns False when this node had no broker running."""
        pid = self.pid()
        if pid is None:
            self._forget()
            return False
        if self._proc is not None and self._proc.pid == pid:
            self._proc.terminate()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        else:
            processes.terminate(pid, timeout_s)
        self._forget()
        return True

    def kill(self) -> bool:
        """SIGKILL, as a crash would (tests of what survives a broker loss)."""
        pid = self.pid()
        if pid is None:
            return False
        if self._proc is not None and self._proc.pid == pid:
            self._proc.kill()
            self._proc.wait(10)
        else:
            processes.kill(pid)
        self._forget()
        return True

    def _forget(self) -> None:
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()


async def probe_kafka(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when a broker answers a metadata request and names a controller."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            cluster = await admin.describe_cluster()
    except (OSError, TimeoutError, KafkaError):
        return False  # not listening yet, or no controller elected yet: the caller retries
    finally:
        with contextlib.suppress(OSError, TimeoutError, KafkaError):
            await admin.close()
    return bool(cluster.get("brokers")) and cluster.get("controller_id", -1) != -1


def kafka_node() -> KafkaNode:
    """The default local node: ``.data/kafka``, 127.0.0.1:9092, controller on 9093."""
    return KafkaNode(home=data_dir() / "kafka", deploy=deploy_dir() / "kafka")
