"""How the serving processes' OpenMP threads wait: passively, unless the user said otherwise.

torch's CPU kernels run on GNU OpenMP, whose idle threads spin for a while after every
parallel region by default (GOMP_SPINCOUNT, milliseconds on this CPU). On a machine whose
cores are shared, with other processes or with a second thread pool (ONNX Runtime, the event
loop, a client), the spinning threads take the cores that the next forward needs: measured on
2 cores at load ≈ 2.8, the floor's two matmuls took 31.7 ms spinning and 8.3 ms waiting
passively, the eager forward 100–111 ms and 12–14 ms (benchmarks/README.md, serving). libgomp
reads its settings once, when torch is imported, so `dinctl serve` and `dinctl predict` set
them first. This module must not import torch.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def wait_passively() -> bool:
    """OMP_WAIT_POLICY=PASSIVE for this process and the workers it starts, unless already set;
    True when it takes effect (torch not imported yet)."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
    return "torch" not in sys.modules
