"""A project-local PostgreSQL server under ``.data/postgres``, run with the system's binaries."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fundhub.cli.devstack import processes
from fundhub.cli.devstack.blocking import run_sync
from fundhub.cli.devstack.endpoints import HostPort, tcp_reachable
from fundhub.cli.devstack.paths import data_dir

DEFAULT_PORT = 55432
SERVER_USER = "postgres"  # the OS account that runs the server when we are root
SUPERUSER = "postgres"  # the database superuser created by initdb
_CONF_NAME = "fundhub.conf"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux


class PostgresNodeError(RuntimeError):
    pass


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_conf(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _running_as_root() -> bool:
    return os.geteuid() == 0


def find_bin_dir(version: str | None = None) -> Path | None:
    """The newest Debian-style ``/usr/lib/postgresql/N/bin`` (or N = ``version``), else PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    for initdb in candidates:
        if version is None or initdb.parent.parent.name == version:
            return initdb.parent
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).resolve().parent
    return None


def install_postgres() -> None:
    """Install the distribution's server (Debian/Ubuntu, as root) when no binaries exist."""
    if not _running_as_root() or shutil.which("apt-get") is None:
        raise PostgresNodeError(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed; install the "
            "'postgresql' package, or point FUNDHUB_DATABASE_URL at a running server"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresNodeError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")


@dataclass
class PostgresNode:
    """One cluster: data in ``home/data``, log in ``home/postgres.log``, trust auth on loopback."""

    home: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # The ledger's and the inbox's indexes are the hot set; a dev box has the memory for them.
    shared_buffers: str = "1GB"
    max_connections: int = 200

    @property
    def address(self) -> HostPort:
        return HostPort(self.host, self.port)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        local = self.home / "run"
        if len(str(local / f".s.PGSQL.{self.port}")) <= _SOCKET_PATH_MAX:
            return local
        # A deep checkout would overflow the socket path limit; use a short per-checkout dir.
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"fundhub-pg-{digest}"

    def superuser_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    # -- running commands as the server's owner ----------------------------------------------

    def _as_owner(self, command: list[str]) -> list[str]:
        if _running_as_root():
            return ["runuser", "-u", SERVER_USER, "--", *command]
        return command

    def _run(self, command: list[str], what: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self._as_owner(command), capture_output=True, text=True, check=False, cwd="/"
        )
        if result.returncode != 0:
            raise PostgresNodeError(
                f"{what} failed (exit {result.returncode}):\n{result.stdout[-3000:]}"
                f"{result.stderr[-3000:]}\n{processes.tail(self.log_file, 20)}"
            )
        return result

    def _give_to_owner(self, *paths: Path) -> None:
        if not _running_as_root():
            return
        for path in paths:
            shutil.chown(path, SERVER_USER, SERVER_USER)

    def _bin(self, name: str) -> str:
        version_file = self.data_dir / "PG_VERSION"
        version = version_file.read_text().strip() if version_file.is_file() else None
        bin_dir = find_bin_dir(version)
        if bin_dir is None and version is None:
            install_postgres()
            bin_dir = find_bin_dir()
        if bin_dir is None:
            wanted = f"PostgreSQL {version} " if version else "PostgreSQL "
            raise PostgresNodeError(f"{wanted}server binaries not found (for {self.data_dir})")
        return str(bin_dir / name)

    # -- preparation ------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if not _running_as_root():
            return
        try:
            import pwd

            pwd.getpwnam(SERVER_USER)
        except KeyError as exc:
            raise PostgresNodeError(
                f"running as root, but there is no '{SERVER_USER}' OS user to run the server"
            ) from exc
        # The server user must be able to pass through .data (which we own) to its directory.
        mode = stat.S_IMODE(self.home.parent.stat().st_mode)
        if not mode & 0o001:
            self.home.parent.chmod(mode | 0o001)
        self._give_to_owner(self.home, self.socket_dir)
        self.socket_dir.chmod(0o700)
        probe = subprocess.run(
            self._as_owner(["test", "-w", str(self.home)]), capture_output=True, check=False
        )
        if probe.returncode != 0:
            raise PostgresNodeError(
                f"the '{SERVER_USER}' user cannot write {self.home}: a parent directory is not "
                "searchable by others (chmod o+x it) or move the checkout"
            )

    def ensure_cluster(self) -> None:
        """initdb once (trust auth, UTF8, C locale) and (re)write our settings file."""
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").is_file():
            self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                "initdb",
            )
        self._write_config()

    def _write_config(self) -> None:
        settings = {
            "listen_addresses": _quote_conf(self.host),
            "port": str(self.port),
            "unix_socket_directories": _quote_conf(str(self.socket_dir)),
            "max_connections": str(self.max_connections),
            "shared_buffers": _quote_conf(self.shared_buffers),
            # Money: durability is not traded for speed, not even locally.
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            # A small (2-core) box.
            "effective_cache_size": "'1GB'",
            "work_mem": "'4MB'",
            "maintenance_work_mem": "'64MB'",
            # Checkpoints by time, not every two minutes of heavy writing: right after one starts,
            # full-page images swell the WAL and every commit waits longer (the bench's p99 at
            # 300/s went from ~75 ms to over 200 ms when a checkpoint began inside its window).
            "max_wal_size": "'4GB'",
            "checkpoint_timeout": "'15min'",
            "wal_compression": "lz4",
            "checkpoint_completion_target": "0.9",
            "max_parallel_workers_per_gather": "1",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_min_duration_statement": "1000",
        }
        lines = ["# Written by the fundhub dev stack on every start; edits here are lost."]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        conf = self.data_dir / _CONF_NAME
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._give_to_owner(conf)
        main_conf = self.data_dir / "postgresql.conf"
        include = f"include_if_exists = '{_CONF_NAME}'"
        if include not in main_conf.read_text(encoding="utf-8"):
            with main_conf.open("a", encoding="utf-8") as handle:
                handle.write(f"\n{include}\n")

    # -- lifecycle --------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The postmaster's pid, if this node's server is running."""
        pid = processes.read_pid(self.data_dir / "postmaster.pid")
        if pid is None or not processes.pid_alive(pid):
            return None
        return pid

    def is_running(self) -> bool:
        """Something accepts connections on the server's port."""
        return tcp_reachable(self.address)

    def start(self, *, wait: bool = True, timeout_s: float = 60.0) -> None:
        """Start the server (pg_ctl detaches it into its own session); no-op if up."""
        if self.pid() is None:
            if self.is_running():
                raise PostgresNodeError(
                    f"{self.address} is taken by a server this node did not start"
                )
            self.ensure_cluster()
            self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(int(timeout_s)),
                    "start",
                ],
                "starting PostgreSQL",
            )
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.is_running() and run_sync(lambda: probe_postgres(self.superuser_dsn())):
                return
            if time.monotonic() > deadline:
                raise PostgresNodeError(
                    f"PostgreSQL at {self.address} not ready after {timeout_s:.0f}s; "
                    f"see {self.log_file}"
                )
            time.sleep(0.3)

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Fast shutdown (rolls back open transactions, checkpoints). False if not running."""
        if self.pid() is None:
            return False
        try:
            self._pg_ctl_stop("fast", timeout_s)
        except PostgresNodeError:
            self._pg_ctl_stop("immediate", 30.0)
        return True

    def kill(self) -> bool:
        """Immediate shutdown: no checkpoint, crash recovery on the next start."""
        if self.pid() is None:
            return False
        self._pg_ctl_stop("immediate", 30.0)
        return True

    def _pg_ctl_stop(self, mode: str, timeout_s: float) -> None:
        self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                str(int(timeout_s)),
                "stop",
            ],
            f"stopping PostgreSQL ({mode})",
        )

    def ensure_database(self, user: str, database: str) -> None:
        """Create the login role (with CREATEDB) and its database if missing (idempotent)."""
        run_sync(lambda: _ensure_database(self.superuser_dsn(), user, database))


async def probe_postgres(dsn: str, timeout_s: float = 3.0) -> bool:
    """True when the server accepts a login and answers a query."""
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False  # refused, starting up (CannotConnectNow), shutting down: not ready yet
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()


async def _ensure_database(superuser_dsn: str, user: str, database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(superuser_dsn, timeout=10)
    try:
        # CREATEDB: the test suite makes a database per test module from a migrated template.
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", user):
            with contextlib.suppress(asyncpg.DuplicateObjectError):
                await conn.execute(f"CREATE ROLE {quote_ident(user)} LOGIN CREATEDB")
        elif not await conn.fetchval("SELECT rolcreatedb FROM pg_roles WHERE rolname = $1", user):
            await conn.execute(f"ALTER ROLE {quote_ident(user)} CREATEDB")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await conn.execute(
                    f"CREATE DATABASE {quote_ident(database)} OWNER {quote_ident(user)}"
                )
    finally:
        await conn.close()


def postgres_node() -> PostgresNode:
    """The default local node: ``.data/postgres``, 127.0.0.1:55432."""
    return PostgresNode(home=data_dir() / "postgres")
