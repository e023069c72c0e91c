"""Operator-facing failures: a message that is safe to print and the exit code to leave with."""

from __future__ import annotations

# Exit codes: 1 = the operation failed, 2 = the operator's input (or configuration) is wrong.
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)
