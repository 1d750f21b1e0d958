"""DCP checkpoints (FSDP runs): they round-trip, and loading one never runs pickled code."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict

from anybind.distributed_checkpoint import SHARDED, load_sharded_checkpoint
from anybind.errors import AnybindError

RAN: list[str] = []


def record(tag: str) -> str:
    RAN.append(tag)
    return tag


class Payload:
    """Unpickling this calls `record`: what a crafted checkpoint would do with os.system."""

    def __reduce__(self):
        return (record, ("payload ran",))


def trained(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(8, 4)).square().sum().backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture(autouse=True)
def _one_process():
    with warnings.catch_warnings():  # DCP says it assumes one process, which is the point here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def write(path: Path, state: dict) -> None:
    dcp.save(state, checkpoint_id=path / SHARDED, no_dist=True)
    (path / "state.json").write_text(json.dumps({"step": 3}))


def test_a_sharded_checkpoint_loads_back_weights_and_optimiser_state(tmp_path: Path) -> None:
    model, optimizer = trained(0)
    weights, optim = get_state_dict(model, optimizer)
    write(tmp_path, {"model": weights, "optim": optim})
    other, other_optimizer = trained(1)
    meta = load_sharded_checkpoint(tmp_path, other, other_optimizer)
    assert meta["step"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
    mine = optimizer.state_dict()["state"]
    theirs = other_optimizer.state_dict()["state"]
    for index, state in mine.items():
        for name, value in state.items():
            assert torch.equal(theirs[index][name], value), (index, name)


def test_crafted_metadata_is_refused_without_running_it(tmp_path: Path) -> None:
    model, optimizer = trained(0)
    weights, optim = get_state_dict(model, optimizer)
    write(tmp_path, {"model": weights, "optim": optim})
    (tmp_path / SHARDED / ".metadata").write_bytes(pickle.dumps(Payload()))
    RAN.clear()
    with pytest.raises(AnybindError, match="not allowed in DCP metadata"):
        load_sharded_checkpoint(tmp_path, *trained(1))
    assert RAN == []


def test_a_crafted_value_is_refused_without_running_it(tmp_path: Path) -> None:
    model, optimizer = trained(0)
    weights, optim = get_state_dict(model, optimizer)
    optim["param_groups"][0]["lr"] = Payload()  # saved by DCP as a pickled value
    write(tmp_path, {"model": weights, "optim": optim})
    RAN.clear()
    with pytest.raises(AnybindError, match="not a plain value"):
        load_sharded_checkpoint(tmp_path, *trained(1))
    assert RAN == []
    # the stock reader would have run it: the refusal above is what stops it
    fresh = trained(1)
    state = dict(zip(("model", "optim"), get_state_dict(*fresh), strict=True))
    dcp.load(state, checkpoint_id=tmp_path / SHARDED, no_dist=True)
    assert RAN == ["payload ran"]
