"""Where the dev stack lives: the workspace root and its git-ignored ``.data/`` directory."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

DATA_DIRNAME = ".data"


class WorkspaceNotFoundError(RuntimeError):
    pass


def _is_workspace_root(directory: Path) -> bool:
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return "workspace" in config.get("tool", {}).get("uv", {})


def find_workspace_root(*starts: Path) -> Path:
    """The nearest directory above any of ``starts`` whose pyproject declares the uv workspace."""
    for start in starts:
        for directory in (start, *start.parents):
            if _is_workspace_root(directory):
                return directory
    raise WorkspaceNotFoundError(
        "cannot find the fundhub workspace (a pyproject.toml with [tool.uv.workspace]); "
        "run this from inside the checkout"
    )


@lru_cache(maxsize=1)
def project_root() -> Path:
    # The working directory first (the operator's checkout), then this file's own checkout
    # (an editable install run from elsewhere).
    return find_workspace_root(Path.cwd().resolve(), Path(__file__).resolve().parent)


def data_dir() -> Path:
    return project_root() / DATA_DIRNAME


def dev_dir() -> Path:
    """Development-only secrets (master key, the simulator's key pair); never used in prod."""
    return data_dir() / "dev"


def deploy_dir() -> Path:
    return project_root() / "deploy"
