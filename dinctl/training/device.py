"""Where and how wide training runs: the device choice and the CPU thread policy.

`train()` applies both for every entry point (CLI, quickstart, experiments), so one config runs
at the same speed whoever starts it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from dinctl.errors import DinctlError


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available, else cpu; `cuda` without CUDA is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise DinctlError(
            "--device cuda was asked for but CUDA is not available", hint="use --device cpu or auto"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_bf16_instructions() -> str | None:
    """The bf16 matmul instructions this CPU has (`avx512_bf16`, `amx`), or None."""
    cpu = torch.cpu
    found = [
        name
        for name, probe in (
            ("amx", getattr(cpu, "_is_amx_tile_supported", None)),
            ("avx512_bf16", getattr(cpu, "_is_avx512_bf16_supported", None)),
        )
        if probe is not None and probe()
    ]
    return " + ".join(found) or None


def cpu_features() -> dict[str, bool]:
    """The CPU's vector and bf16 instruction sets that speed figures depend on (Linux flags;
    otherwise torch's probes)."""
    names = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
        flags = set(line.split(":", 1)[-1].split())
    except OSError:
        flags = set()
    if not flags:
        flags = {"avx512_bf16"} if cpu_bf16_instructions() else set()
    return {name: name in flags for name in names}


def amp_device(device: torch.device) -> tuple[bool, str]:
    """Whether `--amp` (bf16 autocast) runs on `device`, and the reason when it does not."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, ""
        return False, "this GPU has no bf16 support"
    if device.type == "cpu":
        if cpu_bf16_instructions() is not None:
            return True, ""
        return False, "this CPU has no bf16 instructions (avx512_bf16 or AMX)"
    return False, f"no bf16 autocast on {device.type}"


def auto_threads(
    cores: int | None = None, load: float | None = None, most: int | None = None
) -> int:
    """Intra-op torch threads for a CPU run: the cores this process may use minus those other
    jobs keep busy (the 1-minute load average, rounded), at least 1 and at most `most` (torch's
    default). DIN's thin matmuls gain little from a second thread on a quiet machine (+16%,
    2 cores) and lose much when it has to wait for a busy core (2 threads: 31 s, 1 thread:
    17.5 s per epoch, 2 cores at load 2.7)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if most is None:
        most = torch.get_num_threads()
    return max(1, min(int(most), int(cores or 1) - int(math.floor(load + 0.5))))


def thread_count(requested: int) -> int | None:
    """The thread policy: `requested` when > 0; else None (leave torch's setting) when
    OMP_NUM_THREADS is set or torchrun started us, else `auto_threads()`."""
    if requested > 0:
        return requested
    if "OMP_NUM_THREADS" in os.environ or "WORLD_SIZE" in os.environ:
        return None
    return auto_threads()


@contextmanager
def thread_policy(requested: int) -> Iterator[int]:
    """Run the block with the policy's torch thread count; restore the previous one after."""
    before = torch.get_num_threads()
    wanted = thread_count(requested)
    if wanted is not None:
        torch.set_num_threads(wanted)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
