"""Reproduce Symile's synthetic XOR result: Symile learns what pairwise CLIP cannot.

The data follow the paper's binary-XOR experiment (Saporta et al. 2024, arXiv:2411.01053;
rajesh-lab/symile:experiments/datasets.py ``BinaryXORDataset``). a and b are independent vectors
of ``bits`` Bernoulli(½) bits, i ~ Bernoulli(p̂) per sample, and c = a XOR b where i = 1, else
c = a. Our default is ``bits`` = 5, p̂ = 1 (pure XOR). With p̂ = 1 every pair of modalities is
independent while (a, b) fixes c, so no pairwise objective can learn anything. The paper sweeps p̂
and predicts b from (a, c). With p̂ = 1 the three modalities are symmetric, so we predict c from
(a, b).

Both models get the same setup: one MLP per modality (bits → 64 → GELU → 32, inputs mapped to
±1), unit-norm embeddings (the convention of the rest of anybind), a learnable logit scale that
starts at 30 and is capped at 100, AdamW with one-cycle lr 1e-2, batch 250, and the same number of
epochs. The choices matter for Symile's reliability. With a 16-d embedding or an initial scale of
10, about 1 seed in 10 stalls with one of the five bits unlearned (accuracy ≈ 0.5). With 32-d and
scale 30, 40 of 40 seeds of the small test configuration reach 1.0. Unnormalised embeddings at
scale 1 also worked (40/40). The objectives:

* pairwise CLIP: the sum of symmetric InfoNCE over (a, b), (a, c), (b, c)
  (:func:`anybind.objectives.info_nce`), the paper's baseline;
* Symile: :func:`anybind.objectives.symile.symile_loss` with O(N) negatives.

Evaluation. For each test sample, every one of the 2^bits possible c vectors is a candidate.
Symile scores a candidate by MIP(a, b, c). CLIP scores it by the sum of pairwise similarities
a·c + b·c + a·b, as in the paper. The prediction is the argmax, and accuracy is the share where it
equals the true c. Chance is 2^−bits.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anybind.objectives.infonce import info_nce
from anybind.objectives.symile import mip_scores, symile_loss

MODALITIES = ("a", "b", "c")


def xor_data(n: int, bits: int, p_hat: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """n samples of (a, b, c) as float {0, 1} tensors (n, bits)."""
    a = torch.randint(0, 2, (n, bits), generator=gen)
    b = torch.randint(0, 2, (n, bits), generator=gen)
    use_xor = torch.rand(n, 1, generator=gen) < p_hat
    c = torch.where(use_xor, a ^ b, a)
    return {"a": a.float(), "b": b.float(), "c": c.float()}


class XorModel(nn.Module):
    """One small MLP per modality to unit-norm embeddings, plus a learnable log logit scale."""

    def __init__(self, bits: int, hidden: int, dim: int, init_scale: float = 30.0):
        super().__init__()
        self.encoders = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(bits, hidden), nn.GELU(), nn.Linear(hidden, dim))
                for m in MODALITIES
            }
        )
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def embed(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoders[modality](2 * x - 1), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=100.0)


def _loss(
    model: XorModel, batch: dict[str, torch.Tensor], objective: str, gen: torch.Generator
) -> torch.Tensor:
    z = [model.embed(m, batch[m]) for m in MODALITIES]
    if objective == "symile":
        return symile_loss(z, model.scale(), "n", gen)
    return sum(info_nce(z[i], z[j], model.scale()) for i, j in ((0, 1), (0, 2), (1, 2)))


def train_xor(
    objective: str,
    data: dict[str, torch.Tensor],
    *,
    bits: int,
    epochs: int,
    batch_size: int,
    lr: float,
    hidden: int,
    dim: int,
    init_scale: float,
    seed: int,
) -> XorModel:
    torch.manual_seed(seed)
    model = XorModel(bits, hidden, dim, init_scale)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed + 1)
    n = data["a"].shape[0]
    steps = epochs * (n // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.1
    )
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for s in range(n // batch_size):
            idx = order[s * batch_size : (s + 1) * batch_size]
            loss = _loss(model, {m: v[idx] for m, v in data.items()}, objective, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model


@torch.no_grad()
def predict_c_accuracy(model: XorModel, data: dict[str, torch.Tensor], objective: str) -> float:
    """Accuracy of picking the true c among all 2^bits candidates given (a, b)."""
    bits = data["c"].shape[1]
    codes = torch.arange(2**bits)
    candidates = ((codes[:, None] >> torch.arange(bits)) & 1).float()  # (C, bits)
    truth = (data["c"].long() << torch.arange(bits)).sum(dim=1)
    za, zb = model.embed("a", data["a"]), model.embed("b", data["b"])
    zc = model.embed("c", candidates)
    if objective == "symile":
        scores = mip_scores([za, zb], zc)
    else:
        scores = za @ zc.T + zb @ zc.T + (za * zb).sum(dim=1, keepdim=True)
    return float((scores.argmax(dim=1) == truth).float().mean())


def run_symile_xor(
    n_train: int = 10_000,
    n_test: int = 2_000,
    bits: int = 5,
    epochs: int = 20,
    seed: int = 0,
    progress: bool = True,
    *,
    p_hat: float = 1.0,
    batch_size: int = 250,
    lr: float = 1e-2,
    hidden: int = 64,
    dim: int = 32,
    init_scale: float = 30.0,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Train pairwise CLIP and Symile with the same encoders and budget on XOR data; return and
    print test accuracy at predicting c from (a, b).

    threads: torch intra-op threads while running (restored afterwards). The matrices are tiny, so
    one thread is fastest, and on a shared 2-core machine it is several times faster than two.
    None keeps the current setting.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(
            n_train,
            n_test,
            bits,
            epochs,
            seed,
            progress,
            p_hat=p_hat,
            batch_size=batch_size,
            lr=lr,
            hidden=hidden,
            dim=dim,
            init_scale=init_scale,
        )
    finally:
        torch.set_num_threads(previous)


def _run(
    n_train: int,
    n_test: int,
    bits: int,
    epochs: int,
    seed: int,
    progress: bool,
    *,
    p_hat: float,
    batch_size: int,
    lr: float,
    hidden: int,
    dim: int,
    init_scale: float,
) -> dict[str, Any]:
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    train = xor_data(n_train, bits, p_hat, gen)
    test = xor_data(n_test, bits, p_hat, gen)
    settings = {
        "n_train": n_train,
        "n_test": n_test,
        "bits": bits,
        "epochs": epochs,
        "seed": seed,
        "p_hat": p_hat,
        "batch_size": batch_size,
        "lr": lr,
        "hidden": hidden,
        "dim": dim,
        "init_scale": init_scale,
    }
    result: dict[str, Any] = {"settings": settings, "chance": 2.0**-bits}
    for objective in ("clip", "symile"):
        t0 = time.perf_counter()
        model = train_xor(
            objective,
            train,
            bits=bits,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            hidden=hidden,
            dim=dim,
            init_scale=init_scale,
            seed=seed,
        )
        result[f"{objective}_acc"] = predict_c_accuracy(model, test, objective)
        result[f"{objective}_scale"] = float(model.scale().detach())
        result[f"{objective}_seconds"] = time.perf_counter() - t0
        if progress:
            print(
                f"{objective:>6}: accuracy {result[f'{objective}_acc']:.3f} "
                f"({result[f'{objective}_seconds']:.1f} s)",
                flush=True,
            )
    result["seconds"] = time.perf_counter() - start
    print(
        f"Symile XOR (bits={bits}, p_hat={p_hat}, chance {result['chance']:.3f}): "
        f"symile {result['symile_acc']:.3f}, pairwise CLIP {result['clip_acc']:.3f}, "
        f"{result['seconds']:.1f} s"
    )
    return result


if __name__ == "__main__":
    run_symile_xor()
