"""`anybind check-data CONFIG`: decode every record of the configured data before any training
and report each bad one by file and row (workers decode in parallel; nothing is kept)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from torch.utils.data import BatchSampler

from anybind.config import Config
from anybind.config.schema import ShardsSource
from anybind.data.loader import LoaderSettings, batches, make_loader
from anybind.data.shards.stream import reader_loader
from anybind.modalities import Modality, build_modality
from anybind.progress import progress_bar
from anybind.recipes.data import shard_set, source_dataset


@dataclass
class DataCheck:
    split: str
    records: int = 0
    bad: list[str] = field(default_factory=list)  # every bad record's message, in row order
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.bad


def config_modalities(config: Config) -> dict[str, Modality]:
    """The configured modalities alone (no encoders are built or loaded)."""
    return {
        name: build_modality(mc.kind or name, mc.modality_options(name))
        for name, mc in config.modalities.items()
    }


def check_data(
    config: Config,
    *,
    splits: tuple[str, ...] = ("train", "eval"),
    progress: bool = True,
    batch_size: int = 256,
) -> list[DataCheck]:
    modalities = config_modalities(config)
    settings = LoaderSettings.from_config(config.data)
    results = []
    for split in splits:
        sources = config.data.train if split == "train" else config.data.eval
        if not sources:
            continue
        started = time.perf_counter()
        if any(isinstance(s, ShardsSource) for s in sources):
            shards = shard_set(sources, config, modalities)
            loader = reader_loader(shards, batch_size, settings.workers)
            check = DataCheck(split, records=shards.samples)
        else:
            dataset = source_dataset(sources, config, modalities, progress=progress)
            order = BatchSampler(range(len(dataset)), batch_size, drop_last=False)
            loader = make_loader(dataset, order, settings)
            check = DataCheck(split, records=len(dataset))
        with progress_bar("records", disable=not progress) as bar:
            task = bar.add_task(f"checking {split} data", total=check.records)
            for batch in batches(loader):
                check.bad += [b.message for b in batch["bad"]]
                bar.advance(task, len(batch["index"]) + len(batch["bad"]))
        check.wall_s = time.perf_counter() - started
        results.append(check)
    return results
