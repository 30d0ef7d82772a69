"""The model registry: `--model NAME` → the class that builds it from a `ModelConfig`.

A model registers itself where it is defined (`@register("din")`), so adding one touches its
module, the name list of `dinctl.choices.Model` (torch-free, read by the CLI) and the docs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=type[nn.Module])

MODELS: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[M], M]:
    """Class decorator: the model `--model name` builds."""

    def add(cls: M) -> M:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = cls
        return cls

    return add
