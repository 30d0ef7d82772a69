"""TOML parsing on every supported Python: the standard tomllib (3.11+), or its backport tomli
(a dependency on 3.10 only). The one place that imports either."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

loads = tomllib.loads
TOMLDecodeError = tomllib.TOMLDecodeError

__all__ = ["TOMLDecodeError", "loads"]
