"""Ctrl-C as a request: the loop stops at the next step boundary, a second Ctrl-C at once."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopFlag:
    """A SIGINT handler (main thread only) that records the first Ctrl-C in `requested`."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
