"""The CLI's configuration: a malformed ``FUNDHUB_*`` variable is the operator's input gone
wrong (exit 2 with what pydantic said), not a crash, whichever command read it."""

from __future__ import annotations

import typer

from fundhub.cli.errors import EXIT_USAGE
from fundhub.common.config import Settings, get_settings


def cli_settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:  # pydantic's ValidationError: a malformed FUNDHUB_* variable
        typer.echo(f"error: invalid FUNDHUB_* configuration: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
