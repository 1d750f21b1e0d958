"""`torchrun --nproc_per_node=2 anybind train` equals one process on the same batches.

Under torchrun each rank embeds a contiguous chunk of every batch and the loss is computed over
the gathered batch; one process with `optim.micro_batches = 2` (GradCache) embeds the same row
chunks, so BatchNorm sees the same per-chunk statistics and the two runs must agree: losses at
every logged step and every trained parameter after the run, to float tolerance. An odd batch
size makes the ranks' shares unequal (16 + 15 rows).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config
from torchrun_launch import torchrun

from anybind.checkpoint import WEIGHTS, load_weights
from anybind.config.load import config_from_dict
from anybind.recipes.train import train

pytestmark = pytest.mark.slow
TIMEOUT_S = 180


def torchrun_train(config: Path, out: Path) -> subprocess.CompletedProcess:
    anybind = Path(sys.executable).with_name("anybind")
    args = [str(anybind), "train", str(config), "--out", str(out), "--quiet"]
    return torchrun(args, world=2, timeout_s=TIMEOUT_S, no_python=True)


def losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


OBJECTIVES = [
    ({"type": "infonce"}, 32),
    ({"type": "siglip"}, 31),
    ({"type": "symile"}, 31),
    ({"type": "cwcl", "anchor": "text"}, 32),
    ({"type": "infonce", "scale": "per_pair", "positives": "caption"}, 31),
    ({"type": "infonce", "tiled": True, "tile": 8, "positives": "none"}, 31),
]


# FSDP with InfoNCE (local form, per-pair scales) and SigLIP is also checked gradient by gradient
# below; here the objectives that test does not cover
FSDP_OBJECTIVES = [OBJECTIVES[i] for i in (2, 3, 5)]


TRAIN_CASES = [(*o, "ddp") for o in OBJECTIVES] + [(*o, "fsdp") for o in FSDP_OBJECTIVES]


def case_id(case: tuple) -> str:
    return "-".join(str(part) for part in case).replace(" ", "")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    import numpy as np
    from conftest import CLASS_NAMES, tiny_images

    images, labels = tiny_images(96)
    captions = np.array([f"a picture of {CLASS_NAMES[y]}" for y in labels])
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, images=images, labels=labels, captions=captions)
    return path


def torchrun_many(worker: str, cases: list[dict], root: Path) -> None:
    """One torchrun launch for every case (starting the ranks is most of a case's cost)."""
    listing = root / "cases.json"
    listing.write_text(json.dumps(cases))
    script = Path(__file__).with_name(worker)
    done = torchrun([str(script), str(listing)], world=2, timeout_s=TIMEOUT_S * 2)
    assert done.returncode == 0, done.stdout[-6000:]


def exact_config(npz: Path, objective: dict, batch_size: int, parallel: str) -> dict:
    config = tiny_config(
        npz,
        **{
            # Adam turns float-noise differences of near-zero gradient entries into ±lr steps,
            # which compound; the gradients themselves are compared exactly in the next test
            "optim.steps": 3,
            "optim.batch_size": batch_size,
            "objective": objective,
            "train.log_every": 1,
            "train.checkpoint_every": 3,
        },
    )
    config["train"]["parallel"] = parallel
    # no RNG in the step: each rank draws augmentation and dropout from its own stream
    config["modalities"]["image"]["encoder"]["dropout"] = 0.0
    for modality in config["modalities"].values():
        modality["augment"] = False
    return config


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """Every exact-training case trained on 2 ranks, in one launch: case id → run folder."""
    root = tmp_path_factory.mktemp("two_ranks")
    cases, runs = [], {}
    for case in TRAIN_CASES:
        path = root / f"{case_id(case)}.yaml"
        path.write_text(yaml.safe_dump(exact_config(tiny_data, *case)))
        runs[case_id(case)] = root / case_id(case)
        cases.append({"config": str(path), "out": str(runs[case_id(case)])})
    torchrun_many("train_many.py", cases, root)
    return runs


@pytest.mark.parametrize(
    ("objective", "batch_size", "parallel"), TRAIN_CASES, ids=[case_id(c) for c in TRAIN_CASES]
)
def test_two_ranks_train_exactly_like_one_process(
    tmp_path: Path, tiny_data: Path, two_rank_runs: dict, objective: dict, batch_size: int,
    parallel: str,
) -> None:  # fmt: skip
    two_run = two_rank_runs[case_id((objective, batch_size, parallel))]
    config = exact_config(tiny_data, objective, batch_size, parallel)
    config["optim"]["micro_batches"] = 2
    train(config_from_dict(config), tmp_path / "one", progress=False)

    two, one = losses(two_run), losses(tmp_path / "one")
    assert len(two) == len(one) == 3
    assert two == pytest.approx(one, rel=1e-5, abs=1e-6)
    w2, w1 = load_weights(two_run / WEIGHTS), load_weights(tmp_path / "one" / WEIGHTS)
    assert w2.keys() == w1.keys()
    # BatchNorm running statistics are buffers: GradCache updates them twice per step
    params = [k for k in w1 if not k.endswith(("running_mean", "running_var", "batches_tracked"))]
    for key in params:
        a, b = w2[key], w1[key]
        if key.endswith("in_proj_bias"):
            # the key bias has an exactly-zero true gradient (softmax ignores a shift shared by
            # all keys); Adam turns its float-noise gradient into ±lr steps, so only the query
            # and value thirds are comparable
            third = a.shape[0] // 3
            a, b = torch.cat([a[:third], a[2 * third :]]), torch.cat([b[:third], b[2 * third :]])
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=key)
    assert (two_run / "summary.json").is_file()
    (last,) = (two_run / "checkpoints").glob("step-*")
    assert (last / "sharded").is_dir() == (parallel == "fsdp")  # FSDP: a DCP checkpoint


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_a_rank_without_a_modality_in_its_rows_still_trains_exactly(
    tmp_path: Path, tiny_npz: Path, parallel: str
) -> None:
    """Half the samples have no caption, and a batch of 4 gives each rank 2 rows, so in some
    steps a rank holds no text at all: under FSDP it must still run the (sharded) text tower,
    whose all-gather and reduce-scatter every rank joins, and the result must not change."""
    changes = {"optim.steps": 6, "optim.batch_size": 4, "train.log_every": 1}
    config = tiny_config(tiny_npz, **changes, **{"train.parallel": parallel})
    images_only = {"type": "arrays", "path": str(tiny_npz), "keys": {"image": "images"}}
    config["data"]["train"].append(images_only)
    config["modalities"]["image"]["encoder"]["dropout"] = 0.0
    for modality in config["modalities"].values():
        modality["augment"] = False
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = torchrun_train(path, tmp_path / "two")
    assert done.returncode == 0, done.stdout[-6000:]
    config["optim"]["micro_batches"] = 2
    train(config_from_dict(config), tmp_path / "one", progress=False)

    from anybind.data.loader import StepBatchSampler
    from anybind.recipes.data import build_dataset
    from anybind.space import Space

    cfg = config_from_dict(config)
    dataset, _ = build_dataset(cfg.data.train, cfg, Space(cfg).modalities, progress=False)
    no_text = 0
    for rows in StepBatchSampler(len(dataset), 4, 0, 0, 6):
        for half in (rows[:2], rows[2:]):
            mask = dataset.batch(half).get("text_mask", torch.zeros(1, dtype=torch.bool))
            no_text += not bool(mask.any())
    assert no_text >= 1  # the case under test happens

    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)
    w2, w1 = load_weights(tmp_path / "two" / WEIGHTS), load_weights(tmp_path / "one" / WEIGHTS)
    for key in w1:
        if not key.endswith(("running_mean", "running_var", "batches_tracked", "in_proj_bias")):
            torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_killed_mid_epoch_resume_to_the_uninterrupted_weights(
    tmp_path: Path, parallel: str
) -> None:
    from test_lazy_training import lazy_config, manifest

    path = manifest(tmp_path / "data")
    config = lazy_config(
        path,
        **{
            "optim.steps": 8,  # 3 steps an epoch: the checkpoint at step 4 is mid-epoch
            "data.cache": "none",
            "data.workers": 1,
            "train.checkpoint_every": 4,
            "train.parallel": parallel,
        },
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    straight = torchrun_train(cfg, tmp_path / "straight")
    assert straight.returncode == 0, straight.stdout[-6000:]

    killer = Path(__file__).with_name("killed_train.py")
    args = [str(killer), str(cfg), str(tmp_path / "killed"), "5"]
    killed = torchrun(args, world=2, timeout_s=TIMEOUT_S)
    assert killed.returncode != 0 and not (tmp_path / "killed" / "summary.json").exists()
    anybind = Path(sys.executable).with_name("anybind")
    resume = [str(anybind), "train", str(cfg), "--out", str(tmp_path / "killed"), "--resume"]
    resumed = torchrun([*resume, "--quiet"], world=2, timeout_s=TIMEOUT_S, no_python=True)
    assert resumed.returncode == 0, resumed.stdout[-6000:]
    assert resumed.stdout.count("trained 8 steps") == 1  # one summary, from rank 0

    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["resumed_from"] == 4
    a = load_weights(tmp_path / "straight" / WEIGHTS)
    b = load_weights(tmp_path / "killed" / WEIGHTS)
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst == 0.0
    assert losses(tmp_path / "killed") == losses(tmp_path / "straight")


GRAD_CASES = [
    ({"type": "infonce"}, "ddp", 1),  # the local form: each rank scores its own rows
    ({"type": "infonce", "positives": "caption", "scale": "per_pair"}, "ddp", 1),
    ({"type": "siglip"}, "ddp", 1),  # the local form too
    ({"type": "siglip", "tiled": True, "tile": 8}, "ddp", 1),  # over the gathered batch
    ({"type": "infonce"}, "fsdp", 1),
    ({"type": "infonce", "positives": "caption", "scale": "per_pair"}, "fsdp", 1),
    ({"type": "siglip"}, "fsdp", 1),
    # GradCache on each rank: 2 chunks of 16 + 15 rows are the single process's 4 chunks
    ({"type": "infonce", "positives": "caption", "scale": "per_pair"}, "ddp", 2),
    ({"type": "siglip"}, "fsdp", 2),
    ({"type": "symile"}, "ddp", 2),
]


def grad_config(npz: Path, objective: dict, parallel: str, micro: int) -> dict:
    config = tiny_config(npz, **{"optim.batch_size": 31, "objective": objective,
                                 "train.parallel": parallel,
                                 "optim.micro_batches": micro})  # fmt: skip
    config["modalities"]["image"]["encoder"]["dropout"] = 0.0
    return config


@pytest.fixture(scope="module")
def two_rank_grads(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """One step of every gradient case on 2 ranks, in one launch: case id → folder."""
    root = tmp_path_factory.mktemp("grads")
    cases, outs = [], {}
    for case in GRAD_CASES:
        out = root / case_id(case)
        out.mkdir()
        (out / "config.yaml").write_text(yaml.safe_dump(grad_config(tiny_data, *case)))
        cases.append({"config": str(out / "config.yaml"), "out": str(out)})
        outs[case_id(case)] = out
    torchrun_many("ddp_grad_worker.py", cases, root)
    return outs


@pytest.mark.parametrize(
    ("objective", "parallel", "micro"), GRAD_CASES, ids=[case_id(c) for c in GRAD_CASES]
)
def test_one_distributed_step_has_the_single_process_gradients(
    tiny_data: Path, two_rank_grads: dict, objective: dict, parallel: str, micro: int
) -> None:
    """The averaged gradients of a 2-rank step equal one process's on the same 31 rows, to
    float tolerance: this catches a wrong factor of the world size, which Adam's per-element
    normalisation would hide from a comparison of weights. Under FSDP the towers' gradients are
    reduce-scattered shards and the loss's own parameters are averaged apart; clipping combines
    both norms."""
    config = grad_config(tiny_data, objective, parallel, micro)
    two = torch.load(two_rank_grads[case_id((objective, parallel, micro))] / "grads.pt",
                     weights_only=True)  # fmt: skip

    from anybind.data.loader import StepBatchSampler
    from anybind.objectives import build_objective
    from anybind.recipes.data import build_dataset
    from anybind.recipes.train_step import Aligner, forward_backward
    from anybind.space import Space

    config["optim"]["micro_batches"] = 2 * micro  # the same row chunks: BatchNorm sees them too
    cfg = config_from_dict(config)
    torch.manual_seed(0)
    space = Space(cfg).train()
    dataset, _ = build_dataset(cfg.data.train, cfg, space.modalities, progress=False)
    (rows,) = list(StepBatchSampler(len(dataset), 31, 0, 0, 1))
    aligner = Aligner(space, build_objective(cfg), cfg)
    loss, _ = forward_backward(aligner, dataset.batch(rows), 0, torch.device("cpu"))
    assert two["loss"].item() == pytest.approx(loss.item(), rel=1e-6)
    one = {k: p.grad.clone() for k, p in aligner.named_parameters() if p.grad is not None}
    assert set(two["grads"]) == set(one)
    has_own = objective.get("scale") == "per_pair" or objective["type"] == "siglip"
    assert any(k.startswith("objective.") for k in one) == has_own
    for key, grad in one.items():
        torch.testing.assert_close(two["grads"][key], grad, rtol=1e-4, atol=1e-6, msg=key)
    norm = torch.nn.utils.clip_grad_norm_([p for p in aligner.parameters() if p.grad is not None],
                                          0.1)  # fmt: skip
    assert norm > 0.1  # the clipping acts
    assert two["norm"].item() == pytest.approx(norm.item(), rel=1e-5)
    for key, p in aligner.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(two["clipped"][key], p.grad, rtol=1e-4, atol=1e-7, msg=key)


@pytest.mark.parametrize("data", ["arrays", "shards"])
def test_evaluation_sharded_over_two_ranks_reports_what_one_process_does(
    tmp_path: Path, tiny_npz: Path, data: str
) -> None:
    """Each rank decodes and embeds every other row (or shard); the gathered report equals the
    single-process one, and only rank 0 prints it."""
    config = tiny_config(tiny_npz, **{"optim.steps": 6})
    run = tmp_path / "run"
    train(config_from_dict(config), run, progress=False)
    args = ["eval", str(run), "--quiet"]
    if data == "shards":
        from test_shard_training import write_shards

        _, shards = write_shards(tmp_path)
        index = {"type": "shards", "path": str(shards / "shard-*.tar")}
        (tmp_path / "shards.yaml").write_text(yaml.safe_dump([index]))
        args += ["--data", str(tmp_path / "shards.yaml")]
    anybind = Path(sys.executable).with_name("anybind")
    one = subprocess.run([str(anybind), *args, "--json", str(tmp_path / "one.json")],
                         capture_output=True, text=True, timeout=TIMEOUT_S)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = torchrun([str(anybind), *args, "--json", str(tmp_path / "two.json")], world=2,
                   timeout_s=TIMEOUT_S, no_python=True)  # fmt: skip
    assert two.returncode == 0, two.stdout[-6000:]
    assert two.stdout.count("Zero-shot") == 1  # rank 0 alone prints
    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "two.json").read_text())
    held_out = 48 if data == "arrays" else 96  # the config evaluates on the held-out file
    assert a["samples"] == b["samples"] == held_out and a["modalities"] == b["modalities"]
    for modality, scores in a["zero_shot"].items():
        other = b["zero_shot"][modality]
        assert other["confusion"] == scores["confusion"] and other["n"] == scores["n"]
        assert other["per_class_recall"] == pytest.approx(scores["per_class_recall"], abs=1e-9)
    for pair, scores in a["retrieval"].items():
        assert b["retrieval"][pair] == scores
    assert b["geometry"]["modality_gap"] == pytest.approx(a["geometry"]["modality_gap"], abs=1e-5)
