"""The error a refused request raises (shared by the encoders and the service)."""

from __future__ import annotations

from dinctl.errors import DinctlError


class RequestError(DinctlError):
    """A request the service refuses; `status` is its HTTP status code."""

    def __init__(self, message: str, status: int = 422, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
