"""Single-bug mutants: does some test fail when a method's logic is broken?

Each mutant is one textual change to one source file: a loss with its sign flipped, a schedule
off by one, an epoch order seeded by the step, autocast never enabled, class-subset rows not
reordered. For each, a copy of `src/` is mutated and the named tests run against it (through
PYTHONPATH, so the working tree is never touched). A mutant is caught when a test fails.

    .venv/bin/python benchmarks/mutants.py [--only NAME …] [--json results/mutants.json]

Prints a markdown table (mutant, file, tests, caught, seconds); exits 1 if any mutant survives
or the unmutated copy fails its tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADAPT = "tests/unit/adapt"
DIST = "tests/integration/test_distributed_training.py"
SHARDS = "tests/unit/data/test_shards.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # under src/anybind
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant(
        "self-train: diversity term's sign flipped",
        "adapt/self_train.py",
        "return entropy + diversity_weight * (mean * torch.log(mean + 1e-6)).sum()",
        "return entropy - diversity_weight * (mean * torch.log(mean + 1e-6)).sum()",
        (f"{ADAPT}/test_label_free_objectives.py",),
    ),
    Mutant(
        "self-train: pseudo-label cross-entropy's sign flipped",
        "adapt/self_train.py",
        "loss = loss + o.pseudo_weight * ce / len(idx)",
        "loss = loss - o.pseudo_weight * ce / len(idx)",
        (f"{ADAPT}/test_label_free_objectives.py", f"{ADAPT}/test_methods.py"),
    ),
    Mutant(
        "tent: entropy's sign flipped",
        "adapt/tent.py",
        "return -(p * logits.log_softmax(1)).sum(1).mean()",
        "return (p * logits.log_softmax(1)).sum(1).mean()",
        (f"{ADAPT}/test_label_free_objectives.py", f"{ADAPT}/test_methods.py"),
    ),
    Mutant(
        "tower tuning (lora/ia3/adapter/prompt): loss's sign flipped",
        "adapt/tower_tuning.py",
        "return F.cross_entropy(o.scale * emb @ classes.T",
        "return -F.cross_entropy(o.scale * emb @ classes.T",
        (f"{ADAPT}/test_methods.py", f"{ADAPT}/test_tuners.py"),
    ),
    Mutant(
        "cross-modal probe: loss's sign flipped",
        "adapt/cross_modal_probe.py",
        "return (1 - o.text_weight) * loss_x + o.text_weight * loss_t",
        "return -((1 - o.text_weight) * loss_x + o.text_weight * loss_t)",
        (f"{ADAPT}/test_methods.py",),
    ),
    Mutant(
        "class-subset scoring: classifier rows not reordered",
        "adapt/run.py",
        "weights, names = weights[order], [names[i] for i in order]",
        "names = [names[i] for i in order]",
        (f"{ADAPT}/test_methods.py",),
    ),
    Mutant(
        "warmup: first step at 0 instead of 1/warmup",
        "schedules.py",
        "return (step + 1) / warmup",
        "return step / warmup",
        ("tests/unit/test_optim.py",),
    ),
    Mutant(
        "epoch order seeded by the step, not the epoch",
        "data/loader.py",
        "cached = (epoch, self.epoch_order(epoch))",
        "cached = (epoch, self.epoch_order(step))",
        ("tests/unit/data/test_sampler.py",),
    ),
    Mutant(
        "bf16 never enabled",
        "recipes/train_step.py",
        "return torch.autocast(device.type, dtype=torch.bfloat16)",
        "return torch.autocast(device.type, dtype=torch.bfloat16, enabled=False)",
        ("tests/unit/test_optim.py",),
    ),
    Mutant(
        "InfoNCE: loss's sign flipped",
        "objectives/infonce.py",
        'terms[f"{pair_key(a, b)}_loss"] = loss\n',
        'terms[f"{pair_key(a, b)}_loss"] = -loss\n',
        ("tests/unit/objectives", "tests/integration/test_objectives_training.py"),
    ),
    Mutant(
        "SigLIP: loss's sign flipped",
        "objectives/siglip.py",
        'terms[f"{a}~{b}_loss"] = loss\n',
        'terms[f"{a}~{b}_loss"] = -loss\n',
        ("tests/unit/objectives", "tests/integration/test_objectives_training.py"),
    ),
    Mutant(
        "Symile: loss's sign flipped",
        "objectives/symile.py",
        'return {f"{self.name}_loss": loss}',
        'return {f"{self.name}_loss": -loss}',
        ("tests/unit/objectives", "tests/integration/test_objectives_training.py"),
    ),
    Mutant(
        "CWCL: loss's sign flipped",
        "objectives/cwcl.py",
        'terms[f"{m}~{anchor}_loss"] = cwcl_loss(',
        'terms[f"{m}~{anchor}_loss"] = -cwcl_loss(',
        ("tests/unit/objectives", "tests/integration/test_objectives_training.py"),
    ),
    Mutant(
        "shards: every rank reads every shard",
        "data/shards/stream.py",
        "return urls[self.rank :: self.world]",
        "return urls",
        (SHARDS,),
    ),
    Mutant(
        "shards: the shuffle buffer's seed does not change with the epoch",
        "data/shards/stream.py",
        'rng = random.Random(f"{self.seed}/{epoch}/{self.rank}/{stream}")',
        'rng = random.Random(f"{self.seed}/{self.rank}/{stream}")',
        (SHARDS,),
    ),
    Mutant(
        "shards: a resumed stream skips one batch too few",
        "data/shards/stream.py",
        "for _ in range(within // workers):",
        "for _ in range(max(0, within // workers - 1)):",
        (SHARDS, "tests/integration/test_shard_training.py"),
    ),
    Mutant(
        "map-style data: every rank reads the whole global batch",
        "data/loader.py",
        "yield rows.tensor_split(self.world)[self.rank].tolist()",
        "yield rows.tolist()",
        ("tests/unit/data/test_sampler.py", DIST),
    ),
    Mutant(
        "gather with gradient: backward keeps only this rank's own gradient",
        "objectives/distributed.py",
        "dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)",
        "pass",
        ("tests/integration/test_distributed_loss.py", DIST),
    ),
    Mutant(
        "DDP never applied (no gradient average)",
        "recipes/distributed.py",
        "if not group.active:\n        return aligner",
        "if True:\n        return aligner",
        (DIST,),
    ),
    Mutant(
        "local loss: the world-size factor dropped",
        "recipes/train_step.py",
        "return stacked.sum() * dist.get_world_size(), terms",
        "return stacked.sum(), terms",
        (DIST,),
    ),
    Mutant(
        "local InfoNCE: positives not shifted by the rank's offset",
        "objectives/infonce.py",
        "keys_a[start : start + n], keys_b, s, local_g, g, positive_offset=start",
        "keys_a[start : start + n], keys_b, s, local_g, g, positive_offset=0",
        ("tests/unit/objectives/test_local_forms.py", DIST),
    ),
    Mutant(
        "FSDP: replicated parameters' gradients summed, not averaged",
        "recipes/fsdp.py",
        "    flat /= dist.get_world_size()\n",
        "",
        (DIST,),
    ),
    Mutant(
        "sharded evaluation: every rank embeds rank 0's rows",
        "recipes/evaluate.py",
        "rows = list(range(group.rank, len(dataset), group.world))",
        "rows = list(range(0, len(dataset), group.world))",
        (DIST,),
    ),
    Mutant(
        "resume: the optimiser's state not restored",
        "recipes/train_checkpoint.py",
        'run.optimizer.load_state_dict(state["optimizer"])',
        "pass",
        ("tests/integration/test_train_resume.py",),
    ),
)


def run_tests(src: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, float, str]:
    """pytest over `tests` with the package imported from `src`; (exit code, seconds, the
    summary line)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, summary = done.returncode, (done.stdout.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        code, summary = -1, "timed out"
    return code, time.perf_counter() - started, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run the mutants whose name holds one of these")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    with tempfile.TemporaryDirectory(prefix="anybind-mutants-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("*.egg-info"))
        all_tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        code, seconds, summary = run_tests(src, all_tests, args.timeout)
        print(f"unmutated: {summary} ({seconds:.0f} s)")
        if code != 0:
            return 1
        rows = []
        for mutant in chosen:
            path = src / "anybind" / mutant.file
            original = path.read_text(encoding="utf-8")
            if original.count(mutant.old) != 1:
                raise SystemExit(f"{mutant.name}: the text to mutate is not once in {mutant.file}")
            path.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
            try:
                code, seconds, summary = run_tests(src, mutant.tests, args.timeout)
            finally:
                path.write_text(original, encoding="utf-8")
            caught = code == 1  # a test failed (not a collection error or a timeout)
            row = {"mutant": mutant.name, "file": mutant.file, "tests": list(mutant.tests)}
            rows.append({**row, "exit_code": code, "caught": caught, "seconds": round(seconds, 1)})
            verdict = "caught  " if caught else "SURVIVED"
            print(f"{verdict} {mutant.name}: {summary} ({seconds:.0f} s)")
    print("\n| mutant | file | tests | caught |\n|---|---|---|---|")
    for r in rows:
        tests = ", ".join(f"`{t}`" for t in r["tests"])
        print(f"| {r['mutant']} | `{r['file']}` | {tests} | {'yes' if r['caught'] else 'NO'} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r["caught"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
