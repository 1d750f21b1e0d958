"""Sharded training checkpoints with `torch.distributed.checkpoint` (DCP), for FSDP runs.

    checkpoints/step-NNNNNNNN/sharded/   DCP: every rank's shards of the weights and optimiser
    checkpoints/step-NNNNNNNN/state.json step, schedule and meta (as in a whole checkpoint)

Every rank writes its own shards into `.step-NNNNNNNN.partial/` (on a file system all ranks
see); rank 0 then adds state.json, renames the folder into place and moves the `latest`
pointer, as for a whole checkpoint (`anybind.checkpoint`), so a crash leaves the old checkpoint
or the new one, never a torn one. Any number of ranks can load it back: DCP reshards.

Loading never unpickles arbitrary objects: DCP reads tensors with `weights_only=True`, but its
`.metadata` file with a plain `pickle.load`, and non-tensor values with
`torch.load(weights_only=False)`. `SafeReader` reads the metadata with an unpickler that builds
only DCP's own metadata classes and a few torch types; `SafeLoadPlanner` reads the values
weights-only.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from anybind.checkpoint import atomic_write_text, prune_checkpoints, read_state
from anybind.errors import AnybindError

SHARDED = "sharded"
_ALLOWED_MODULES = ("torch.distributed.checkpoint.", "torch.distributed.tensor.")
_ALLOWED_NAMES = {
    ("torch", "Size"),
    ("torch", "device"),
    ("torch.serialization", "_get_layout"),  # a torch layout by its name
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("collections", "OrderedDict"),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        dtype = module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        if dtype or module.startswith(_ALLOWED_MODULES) or (module, name) in _ALLOWED_NAMES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in DCP metadata")


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default planner, but the non-tensor values (the optimiser's hyper-parameters) are
    read with `torch.load(weights_only=True)`, not with a plain unpickler."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        try:
            obj = torch.load(value, weights_only=True)
        except Exception as exc:
            raise AnybindError(f"{read_item.dest_index.fqn}: not a plain value ({exc})") from exc
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj


class SafeReader(FileSystemReader):
    """A `FileSystemReader` whose metadata unpickler builds only DCP's metadata types."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            raw = stream.read()
        try:
            metadata = _MetadataUnpickler(io.BytesIO(raw)).load()
        except Exception as exc:
            raise AnybindError(f"cannot read checkpoint metadata {path}: {exc}") from exc
        if not isinstance(metadata, Metadata):
            raise AnybindError(f"{path} is not DCP metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def save_sharded_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    keep: int,
) -> Path:
    """Every rank calls this (it is a collective); rank 0 writes state.json and renames."""
    name = f"step-{step:08d}"
    partial, final = root / f".{name}.partial", root / name
    main = dist.get_rank() == 0
    if main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    dist.barrier()
    weights, optim = get_state_dict(model, optimizer)
    dcp.save({"model": weights, "optim": optim}, checkpoint_id=partial / SHARDED)
    dist.barrier()  # every rank's shards are on disk
    if main:
        (partial / "state.json").write_text(json.dumps({"step": step, **meta}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        atomic_write_text(root / "latest", name)
        prune_checkpoints(root, keep)
    dist.barrier()
    return final


def is_sharded(checkpoint: Path) -> bool:
    return (checkpoint / SHARDED).is_dir()


def load_sharded_checkpoint(
    checkpoint: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Weights and optimiser state into the (sharded or whole) `model` and `optimizer`; returns
    state.json. Every rank calls this."""
    weights, optim = get_state_dict(model, optimizer)
    state = {"model": weights, "optim": optim}
    reader = SafeReader(checkpoint / SHARDED)
    try:
        meta = read_state(checkpoint)
        reader.read_metadata()  # refuses crafted metadata before DCP reads any of it
        with warnings.catch_warnings():  # one process may resume a sharded checkpoint
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(
                state,
                storage_reader=reader,
                planner=SafeLoadPlanner(),
                no_dist=not dist.is_initialized(),
            )
    except AnybindError:
        raise
    except CheckpointException as exc:  # a BaseException: every rank's failure, wrapped
        reasons = {str(failure) for failure, _ in exc.failures.values()}
        raise AnybindError(f"cannot read checkpoint {checkpoint}: {'; '.join(reasons)}") from None
    except Exception as exc:
        raise AnybindError(f"cannot read checkpoint {checkpoint}: {exc}") from exc
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
    )
    return meta


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict of a sharded model, on CPU, on rank 0 (empty elsewhere). Every rank
    calls this."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)
