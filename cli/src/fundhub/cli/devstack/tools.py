"""Command-line tools the checks need, fetched into the checkout's git-ignored ``.tools/``
without installing anything, and found there by the next run: ``promtool`` from the
distribution's ``prometheus`` package (``apt-get download`` and ``dpkg -x`` need no root);
``haproxy`` from the distribution's ``haproxy`` package (its libraries beside it, run through
a launcher that points the loader at them); ``kubeconform`` built, and the API schemas and
CRDs read, from the Go module proxy."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fundhub.cli.devstack.paths import project_root

TOOLS_DIRNAME = ".tools"


class ToolUnavailableError(RuntimeError):
    pass


def tools_dir() -> Path:
    return project_root() / TOOLS_DIRNAME


def promtool() -> Path:
    """Prometheus's rule checker, from Debian's ``prometheus`` package."""
    return debian_tool("prometheus", "usr/bin/promtool")


# The load balancer of the scale-out test: its shared libraries that a Debian system without
# the package lacks (Lua, OpenTracing), unpacked with it.
HAPROXY_LIBRARIES = ("liblua5.3-0", "libopentracing-c-wrapper0", "libopentracing1")


def haproxy() -> Path:
    """HAProxy, from Debian's ``haproxy`` package: a launcher that runs it with its libraries."""
    return debian_tool(
        "haproxy", "usr/sbin/haproxy", libraries=HAPROXY_LIBRARIES, version_flag="-v"
    )


def debian_tool(
    package: str,
    member: str,
    *,
    libraries: tuple[str, ...] = (),
    version_flag: str = "--version",
) -> Path:
    """``member`` of ``package``'s files, unpacked under ``.tools/<package>``; fetched once.

    With ``libraries`` (packages of shared libraries it needs that may not be installed),
    those are unpacked beside it, and the path returned is a launcher that runs ``member``
    with the loader pointed at them: nothing is installed on the system."""
    home = tools_dir() / package
    binary = home / member
    if libraries:
        binary = home / "bin" / Path(member).name
    if _runs(binary, version_flag):
        return binary
    home.parent.mkdir(parents=True, exist_ok=True)
    with _locked(home.parent / f".{package}.lock"):
        if _runs(binary, version_flag):  # another process fetched it while we waited
            return binary
        _fetch((package, *libraries), home)
        if libraries:
            _write_launcher(binary, home / member, home)
    if not _runs(binary, version_flag):
        raise ToolUnavailableError(f"{package} was unpacked but {member} does not run")
    return binary


def _write_launcher(launcher: Path, target: Path, root: Path) -> None:
    library_dirs = sorted({str(lib.parent) for lib in root.glob("usr/lib/**/*.so*")})
    path = ":".join(library_dirs)
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(
        "#!/bin/sh\n"
        f'LD_LIBRARY_PATH="{path}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
        f'exec "{target}" "$@"\n',
        encoding="utf-8",
    )
    launcher.chmod(0o755)


def _runs(binary: Path, version_flag: str = "--version") -> bool:
    if not binary.is_file():
        return False
    try:
        result = subprocess.run(
            [str(binary), version_flag], capture_output=True, timeout=30, check=False
        )
    except OSError:
        return False
    return result.returncode == 0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _fetch(packages: tuple[str, ...], home: Path) -> None:
    package = packages[0]
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise ToolUnavailableError(
            f"Debian's '{package}' package is needed and this system has no apt-get/dpkg: "
            f"unpack it (or install it) into {home}"
        )
    with tempfile.TemporaryDirectory(dir=home.parent) as scratch:
        command = ["apt-get", "download", *packages]
        download = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
        if download.returncode != 0 and os.geteuid() == 0:
            # A fresh container has no package lists yet; only root may fetch them.
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            download = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
        debs = [sorted(Path(scratch).glob(f"{name}_*.deb")) for name in packages]
        if download.returncode != 0 or not all(debs):
            raise ToolUnavailableError(
                f"could not fetch Debian's '{package}' package ({' '.join(command)}): "
                f"{download.stderr.strip()[-2000:]}; as root run `apt-get update` first"
            )
        unpacked = Path(scratch) / "root"
        for found in debs:
            extract = subprocess.run(
                ["dpkg", "-x", str(found[-1]), str(unpacked)], capture_output=True, text=True
            )
            if extract.returncode != 0:
                raise ToolUnavailableError(f"dpkg -x {found[-1].name} failed: {extract.stderr}")
        shutil.rmtree(home, ignore_errors=True)
        unpacked.rename(home)


GO = Path("/usr/local/go/bin/go")  # the toolchain's usual home, if `go` is not on PATH


def kubeconform() -> Path:
    """The Kubernetes manifest validator, built from the Go module proxy."""
    return go_tool("github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0")


def go_tool(package: str, version: str) -> Path:
    """``go install package@version`` into ``.tools/go/bin`` (module and build caches there
    too, so a second run builds nothing)."""
    binary = tools_dir() / "go" / "bin" / package.rsplit("/", 1)[-1]
    stamp = binary.with_name(f".{binary.name}.version")
    if binary.is_file() and stamp.is_file() and stamp.read_text() == version:
        return binary
    with _locked(tools_dir() / ".go.lock"):
        if not (binary.is_file() and stamp.is_file() and stamp.read_text() == version):
            _go("install", f"{package}@{version}")
            stamp.write_text(version)
    return binary


def go_module(module: str, version: str) -> Path:
    """The unpacked files of ``module@version`` from the Go module proxy (data a module
    publishes: API specifications, CRDs), read-only in ``.tools/go/mod``."""
    with _locked(tools_dir() / ".go.lock"):
        listed = json.loads(_go("mod", "download", "-json", f"{module}@{version}"))
    return Path(listed["Dir"])


def _go(*args: str) -> str:
    go = shutil.which("go") or (str(GO) if GO.is_file() else None)
    if go is None:
        raise ToolUnavailableError("Go is needed to build the manifest checks: install Go 1.22+")
    home = tools_dir() / "go"
    env = {
        **os.environ,
        "GOPATH": str(home),
        "GOMODCACHE": str(home / "mod"),
        "GOCACHE": str(home / "cache"),
        "GOBIN": str(home / "bin"),
        "GOFLAGS": "-modcacherw",
        "GOTOOLCHAIN": "local",
    }
    home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [go, *args], env=env, cwd=home, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        raise ToolUnavailableError(f"go {' '.join(args)} failed: {result.stderr[-3000:]}")
    return result.stdout
