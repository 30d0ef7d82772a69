"""The one exception type the library raises for user-facing problems."""

from __future__ import annotations


class DinctlError(Exception):
    """A problem the user can fix: one-sentence message, optional hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message
