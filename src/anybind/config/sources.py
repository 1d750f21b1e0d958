"""The data sources a config's `data.train` and `data.eval` list, one typed model per `type`
(validated as a tagged union by `Source`), and which modalities each provides."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from anybind.options import Options


class Strict(Options):
    """A config section: see `anybind.options.Options`."""


DigitsModality = Literal["image", "audio", "timeseries", "pointcloud", "video"]


class DigitsSource(Strict):
    """The built-in digits benchmark: scikit-learn 8×8 images and espeak-ng speech, and views of
    synthetic digits being written (pen trajectories, point clouds, videos of the drawing)."""

    type: Literal["digits"] = "digits"
    split: Literal["train", "test"] = "train"
    modalities: list[DigitsModality] = Field(default_factory=lambda: ["image", "audio"])
    train_voices: int = 240
    test_voices: int = 60
    image_test_fraction: float = Field(0.3, gt=0, lt=1)
    #: training split only: this many synthetic pen-stroke digits per class join the UCI images
    stroke_images_per_class: int = Field(0, ge=0)
    #: written digits per class whose views are the `timeseries`, `pointcloud` and `video`
    #: modalities (one record per drawing, holding each of them that is listed)
    drawings_per_class: int = Field(300, ge=0)
    #: pair each speech clip with an image of the same digit (a seeded draw) in one record, so
    #: the two modalities of a sample can be fused; needs image and audio in `modalities`
    paired: bool = False
    #: put each drawing's own image (its finished last frame) into its record as `image`, to
    #: bind a new modality to images too (image is then not the UCI digits alone)
    drawing_images: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _pairs_need_both(self) -> DigitsSource:
        if self.paired and not {"image", "audio"} <= set(self.modalities):
            raise ValueError("paired: needs image and audio in modalities")
        return self


class ManifestSource(Strict):
    """JSONL, CSV or Parquet: one column per modality holding a path or an inline value."""

    type: Literal["manifest"] = "manifest"
    path: str
    columns: dict[str, str] = Field(default_factory=dict)  # modality → column (default: same)
    label_column: str | None = "label"
    root: str | None = None  # relative paths are resolved against this (default: manifest dir)


class FolderSource(Strict):
    """A folder of files of one modality; the label comes from the file name by a regex."""

    type: Literal["folder"] = "folder"
    path: str
    modality: str
    pattern: str = r"^(?P<label>[^_]+)_"
    glob: str = "*"


class ArraysSource(Strict):
    """An .npz file: one array per modality (first axis = samples) and an optional label array."""

    type: Literal["arrays"] = "arrays"
    path: str
    keys: dict[str, str]  # modality → array name
    label_key: str | None = "labels"
    preprocess: Literal["none", "mnist_to_uci"] = "none"


class PenDigitsSource(Strict):
    """UCI pen-based handwritten digits: rows `x1,y1,…,x8,y8,digit` (a header line optional),
    eight pen positions on a 0–100 grid in writing order → a (2, 8) series of `modality`."""

    type: Literal["pendigits"] = "pendigits"
    path: str
    modality: str = "timeseries"


class AVDigitsSource(Strict):
    """Real MNIST images each paired with a real FSDD recording of the same digit
    (anybind.data.av_digits: the seeded pairing rule)."""

    type: Literal["av_digits"] = "av_digits"
    #: the folder holding mnist/mnist-test-first5000.npz and fsdd/recordings
    path: str
    seed: int = 0


class ShardsSource(Strict):
    """WebDataset tar shards written by `anybind shard`, streamed (never loaded whole)."""

    type: Literal["shards"] = "shards"
    #: a local glob or brace list, or any URL webdataset opens (`pipe:aws s3 cp s3://… -`)
    path: str
    #: the shard set's index.json (default: beside local shards; needed for remote ones)
    index: str | None = None
    #: raw (undecoded) samples each worker holds to shuffle from
    shuffle_buffer: int = Field(2000, ge=0)
    #: samples in one training epoch, across ranks (default: every sample of the shards)
    samples_per_epoch: int | None = Field(None, gt=0)


Source = Annotated[
    DigitsSource
    | ManifestSource
    | FolderSource
    | ArraysSource
    | PenDigitsSource
    | AVDigitsSource
    | ShardsSource,
    Field(discriminator="type"),
]


def _source_modalities(source: Any) -> list[str]:
    if isinstance(source, DigitsSource):
        return [*source.modalities, *(["image"] if source.drawing_images else []), "text"]
    if isinstance(source, PenDigitsSource):
        return [source.modality]
    if isinstance(source, AVDigitsSource):
        return ["image", "audio"]
    if isinstance(source, FolderSource):
        return [source.modality]
    if isinstance(source, ArraysSource):
        return list(source.keys)
    if isinstance(source, ManifestSource):
        return list(source.columns)
    return []
