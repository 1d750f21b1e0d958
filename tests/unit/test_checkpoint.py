from __future__ import annotations

import pickle

import pytest
import torch

from anybind import checkpoint as ck
from anybind.errors import AnybindError


def test_checkpoints_round_trip_and_latest_points_to_the_newest(tmp_path):
    weights = {"w": torch.randn(3, 4)}
    optim = {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1}]}
    for step in (1, 2, 3):
        ck.save_checkpoint(tmp_path, step, weights, optim, {"epoch": step / 2}, keep=2)
    latest = ck.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step-00000003"
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000002", "step-00000003"]
    w, o, meta = ck.load_checkpoint(latest)
    assert torch.equal(w["w"], weights["w"]) and meta == {"step": 3, "epoch": 1.5}
    assert torch.equal(o["state"][0]["exp_avg"], torch.ones(2))


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    ck.save_checkpoint(tmp_path, 1, {"w": torch.zeros(2)}, {}, {})

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError):
        ck.save_checkpoint(tmp_path, 2, {"w": torch.ones(2)}, {}, {})
    latest = ck.latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step-00000001"
    assert not list(tmp_path.glob(".step-*"))  # no torn temporary left behind


def test_atomic_write_keeps_old_content_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    ck.atomic_write_text(target, "old")
    monkeypatch.setattr(ck.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        ck.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    ck.save_checkpoint(tmp_path, 1, {"w": torch.zeros(1)}, {}, {})
    path = ck.latest_checkpoint(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (path / "optimizer.pt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(AnybindError, match="cannot read checkpoint"):
        ck.load_checkpoint(path)


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(AnybindError, match="model.safetensors"):
        ck.load_weights(bad)


@pytest.mark.parametrize("target", ["../../elsewhere", "/etc", "step-1", "step-00000004/../x"])
def test_a_latest_pointer_out_of_the_run_is_refused_not_followed(tmp_path, target):
    outside = tmp_path / "elsewhere"
    (outside / "state.json").parent.mkdir(parents=True)
    (outside / "state.json").write_text('{"step": 4}')
    root = tmp_path / "run" / "checkpoints"
    root.mkdir(parents=True)
    (root / "latest").write_text(target)
    with pytest.raises(AnybindError, match="not a step-NNNNNNNN folder of this run"):
        ck.latest_checkpoint(root)


@pytest.mark.parametrize(
    ("state", "message"),
    [('{"epoch": 1}', "None"), ('{"step": "4"}', "'4'"), ('{"step": -1}', "-1"),
     ('{"step": true}', "True"), ("[4]", "None"), ("{not json", "cannot read")],
)  # fmt: skip
def test_a_checkpoint_state_without_a_step_is_named(tmp_path, state, message):
    path = ck.save_checkpoint(tmp_path, 4, {"w": torch.zeros(2)}, {"optimizer": {}}, {})
    (path / "state.json").write_text(state)
    with pytest.raises(AnybindError, match="state.json") as err:
        ck.load_checkpoint(path)
    assert message in str(err.value)


def test_a_failed_write_names_its_file_and_the_reason(tmp_path, monkeypatch) -> None:
    """torch.save and safetensors report a short write (a full disk) as their own RuntimeError
    without a path; the write helper turns it into the OSError it stands for, with the path."""
    import errno
    import shutil
    from collections import namedtuple

    from anybind.checkpoint import writing

    target = tmp_path / "optimizer.pt"
    with pytest.raises(OSError) as info, writing(target):
        raise OSError(errno.ENOSPC, "No space left on device")  # what f.write raises
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as info, writing(target):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")
    assert info.value.errno == errno.EIO and info.value.filename == str(target)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(100, 100, 0))
    with pytest.raises(OSError) as info, writing(target):
        raise RuntimeError("unexpected pos 14080 vs 13972")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
