"""The address `dinctl serve` listens on: checked before the model loads, so a busy port or an
address this machine does not have is one line (not uvicorn's own message and exit 3)."""

from __future__ import annotations

import errno
import socket

from dinctl.errors import DinctlError

EVERY_INTERFACE = ("0.0.0.0", "::", "")


def check_bindable(host: str, port: int) -> None:
    """Bind `host:port` as uvicorn will (SO_REUSEADDR) and release it; a DinctlError if not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise DinctlError(
            f"--host {host!r} is not an address this machine can listen on ({reason})",
            hint="pass an address of this machine: 127.0.0.1 (default), or 0.0.0.0 for all",
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise DinctlError(
                    f"port {port} on {host} is already in use",
                    hint="choose another --port, or stop the server that holds it",
                ) from None
            raise DinctlError(
                f"cannot listen on {host}:{port} ({err.strerror or type(err).__name__})",
                hint="pass an address of this machine: 127.0.0.1 (default), or 0.0.0.0 for all",
            ) from None


def every_interface(host: str) -> bool:
    """True when `host` listens on every network interface (reachable from other machines)."""
    return host.strip() in EVERY_INTERFACE
