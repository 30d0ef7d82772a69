"""Every registry model gives the same logits on CPU and CUDA (eval and train mode), then times
a DIN-Dice training step at batch 4096 with and without bf16 autocast. Needs a CUDA GPU.

    python benchmarks/gpu_models_check.py
"""

import time

import torch

from dinctl.data.batching import Batch
from dinctl.models import ACTS, MODEL_NAMES, ModelConfig, build_model

torch.manual_seed(0)
B, T = 512, 100
lengths = torch.randint(0, T + 1, (B,))
mask = torch.arange(T)[None] < lengths[:, None]
batch = Batch(
    user=torch.ones(B, dtype=torch.long),
    item=torch.randint(1, 63002, (B,)),
    cate=torch.randint(1, 802, (B,)),
    hist_item=torch.randint(1, 63002, (B, T)) * mask,
    hist_cate=torch.randint(1, 802, (B, T)) * mask,
    hist_mask=mask,
    label=torch.zeros(B),
)
worst = 0.0
for name in MODEL_NAMES:
    for act in ACTS:
        for softmax in (False, True) if name == "din" else (False,):
            torch.manual_seed(1)
            cfg = ModelConfig(
                model=name,
                n_users=1,
                n_items=63001,
                n_cates=801,
                act=act,
                attn_softmax=softmax,
                init_std=0.1,
            )
            m = build_model(cfg)
            g = build_model(cfg)
            g.load_state_dict(m.state_dict())
            g = g.cuda()
            for mode in ("eval", "train"):
                m.train(mode == "train")
                g.train(mode == "train")
                a = m(batch).logits
                b = g(batch.to("cuda")).logits.cpu()
                d = (a - b).abs().max().item()
                worst = max(worst, d)
                print(f"{name:9s} {act:7s} softmax={softmax!s:5s} {mode:5s} max|cpu-cuda| {d:.2e}")
print(f"worst {worst:.2e}")
if worst > 1e-4:
    raise SystemExit(f"CPU and CUDA logits differ by {worst:.2e} (> 1e-4)")
cfg = ModelConfig(model="din", n_users=1, n_items=63001, n_cates=801, act="dice")
m = build_model(cfg).cuda()
opt = torch.optim.Adam(m.parameters(), fused=True)
gb = batch.to("cuda")
big = Batch(**{k: torch.cat([v] * 8) for k, v in gb.__dict__.items()})  # 4096 rows
for amp in (False, True):
    for i in range(25):
        if i == 5:
            torch.cuda.synchronize()
            t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                m(big).logits.float(), big.label
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    print(
        f"DIN dice batch 4096 amp={amp}: "
        f"{20 * 4096 / (time.perf_counter() - t):,.0f} samples/s (model + Adam step only)"
    )
