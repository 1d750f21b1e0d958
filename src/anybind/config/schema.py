"""The typed configuration of a run: one model per concern, unknown keys are errors.

Modality preprocessing options and encoder options are validated against the Options model of
the registered modality kind and encoder type, so a typo inside them is caught too.

The sections that stand alone live beside this file (sources.py, objectives.py, fusion.py,
backbone.py for the backbone's checks). What stays here is `Config` and the sections its
validator checks against each other (modalities × objective × data × base × fusion): those
checks read every section at once, so they are kept in one place, one method per concern.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from anybind.config.backbone import check_backbone

# the objectives and the sources live in their own modules; they are imported from here too
from anybind.config.fusion import FusionConfig, PredictorConfig
from anybind.config.objectives import (
    CWCLConfig,
    InfoNCEConfig,
    ObjectiveConfig,
    SigLIPConfig,
    SymileConfig,
)
from anybind.config.sources import (
    ArraysSource,
    AVDigitsSource,
    DigitsSource,
    FolderSource,
    ManifestSource,
    PenDigitsSource,
    ShardsSource,
    Source,
    Strict,
    _source_modalities,
)
from anybind.encoders import ENCODERS, EncoderOptions, encoder_options
from anybind.encoders.backbone import BackboneOptions
from anybind.errors import ConfigError
from anybind.modalities import MODALITIES
from anybind.modalities.base import ModalityOptions
from anybind.options import Fraction, Size


class ProjectionConfig(Strict):
    """Maps encoder features into the shared space. `identity` needs D_enc == space.dim."""

    type: Literal["linear", "mlp", "identity"] = "linear"
    hidden: Size = 512
    dropout: Fraction = 0.0


class ModalityConfig(Strict):
    kind: str | None = None  # the registered modality; defaults to the config key
    options: dict[str, Any] = Field(default_factory=dict)
    encoder: dict[str, Any]
    projection: ProjectionConfig = Field(default_factory=ProjectionConfig)
    freeze_encoder: bool = False
    freeze_projection: bool = False
    augment: bool = True
    #: an extended run: initialise this encoder (or, for an encoder that runs an image encoder
    #: per frame, that per-frame encoder) from the encoder of this base modality
    init_from: str | None = None
    #: keep the encoder frozen and train a tuner in it (`type`: lora, ia3, adapter, prompt,
    #: and the tuner's options), with the projection (OneEncoder / ONE-PEACE style)
    tuner: dict[str, Any] | None = None

    def modality_options(self, name: str) -> ModalityOptions:
        return MODALITIES.get(self.kind or name).Options(**self.options)

    def encoder_options(self) -> EncoderOptions:
        return encoder_options(self.encoder)


class SpaceConfig(Strict):
    dim: Size = 256
    init_temperature: float = Field(0.07, gt=0)
    max_logit_scale: float = Field(100.0, gt=1)
    learn_temperature: bool = True


#: the `type` of each typed config section → the section kind, for error messages (pydantic
#: puts the type into the error's path)
SECTION_TYPES: dict[str, str] = {
    **{
        get_args(m.model_fields["type"].annotation)[0]: "objective"
        for m in (InfoNCEConfig, SigLIPConfig, CWCLConfig, SymileConfig)
    },
    **{
        get_args(m.model_fields["type"].annotation)[0]: "source"
        for m in (
            DigitsSource,
            ManifestSource,
            FolderSource,
            ArraysSource,
            PenDigitsSource,
            AVDigitsSource,
            ShardsSource,
        )
    },
}


class DataConfig(Strict):
    train: list[Source] = Field(min_length=1)
    eval: list[Source] = Field(default_factory=list)
    class_names: list[str] | None = Field(None, min_length=1)
    #: Caption templates per modality, used to give labelled samples without text a caption.
    captions: dict[str, list[str]] = Field(default_factory=dict)
    skip_bad: bool = False
    #: "memory": decode every sample once before training and keep it (fast epochs, RAM grows
    #: with the data); "none": decode each sample when it is drawn, in `workers` processes
    #: (RAM does not grow with the data); "auto": memory for sources already held in RAM
    #: (digits, .npz arrays), none for files on disk (manifests, folders)
    cache: Literal["auto", "memory", "none"] = "auto"
    #: DataLoader worker processes that decode and collate (0: in the main process)
    workers: int = Field(0, ge=0)
    #: batches each worker prepares ahead
    prefetch_factor: int = Field(2, gt=0)
    #: keep the workers alive between epochs (faster epoch starts, their buffers stay in RAM)
    persistent_workers: bool = False
    #: copy batches into page-locked memory (faster host-to-GPU copies; CUDA only)
    pin_memory: bool = True
    #: seconds to wait for one batch from a worker before the run stops (0: no limit)
    worker_timeout_s: float = Field(0.0, ge=0)
    #: folder of the on-disk cache for expensive frozen features (audio `speech_embedding`),
    #: keyed by the content hash and the representation's options; "" turns it off; default
    #: $ANYBIND_CACHE/features (~/.cache/anybind/features)
    feature_cache: str | None = None

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("train", "eval")
    @classmethod
    def _shards_alone(cls, value: list[Any]) -> list[Any]:
        kinds = {isinstance(s, ShardsSource) for s in value}
        if len(kinds) > 1:
            raise ValueError(
                "shards are streamed: a split is either all shards sources or none "
                "(write the other sources into shards with `anybind shard`)"
            )
        return value

    @field_validator("class_names")
    @classmethod
    def _distinct_class_names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None:
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"class names must be distinct; repeated: {repeated}")
            if any(not n.strip() for n in names):
                raise ValueError("a class name is empty")
        return names


class OptimConfig(Strict):
    #: at most 100: an AdamW step is lr × O(1), and beyond about 1e38 its bias-corrected step
    #: no longer fits a float32
    lr: float = Field(1e-3, gt=0, le=100)
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = Field(50, ge=0)
    epochs: int | None = Field(None, gt=0)
    steps: int | None = Field(None, gt=0)
    batch_size: int = Field(256, gt=1)
    #: embed each batch in this many row chunks (GradCache): the same loss over all in-batch
    #: negatives with the activation memory of one chunk; exact unless the encoders hold
    #: BatchNorm, whose statistics then come from each chunk
    micro_batches: int = Field(1, ge=1)
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    @model_validator(mode="after")
    def _one_length(self) -> OptimConfig:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("set exactly one of optim.epochs and optim.steps")
        return self


class TrainConfig(Strict):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = Field(100, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(10, gt=0)
    #: seconds a collective may wait before a rank gives up (torchrun runs)
    timeout_s: float = Field(1800.0, gt=0)
    #: torch.compile every trainable tower's encoder (in place: checkpoints keep their keys);
    #: the first steps pay for the compilation
    compile: bool = False
    #: under torchrun: replicate the towers (`ddp`, DistributedDataParallel) or shard them per
    #: block (`fsdp`, FSDP2's fully_shard, sharded checkpoints); one process ignores it
    parallel: Literal["ddp", "fsdp"] = "ddp"


class EvalConfig(Strict):
    #: Zero-shot prompt templates per modality ("{}" is replaced by the class name).
    templates: dict[str, list[str]] = Field(default_factory=dict)
    default_templates: list[str] = Field(default_factory=lambda: ["{}", "a {}", "the {}"])
    batch_size: int = 512
    max_uniformity_samples: int = 2000


class BaseRunConfig(Strict):
    """The run an extended run was grown from (`anybind extend`): its towers are loaded from
    there, frozen, and never stored again."""

    #: the base run folder, relative to the extended run's folder (or absolute)
    path: str
    #: SHA-256 of the base run's model.safetensors when it was extended
    weights_sha256: str
    #: the modalities that come from the base run
    modalities: list[str] = Field(min_length=1)
    #: the pairs the base run was trained on (evaluation marks them as trained together)
    pairs: list[tuple[str, str]] = Field(default_factory=list)


class Config(Strict):
    modalities: dict[str, ModalityConfig]
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    objective: ObjectiveConfig = Field(default_factory=InfoNCEConfig)
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    #: set by `anybind extend`: the run whose frozen towers this one is grown from
    base: BaseRunConfig | None = None
    fusion: FusionConfig | None = None
    predictor: PredictorConfig | None = None
    #: a transformer body shared by the towers whose encoder is `backbone`
    #: (encoders/backbone.py): one shared FFN, one per modality, or routed experts
    backbone: BackboneOptions | None = None

    @model_validator(mode="after")
    def _check_combinations(self) -> Config:
        names = set(self.modalities)
        if self.base is not None:
            self._check_base(names)
        if self.fusion is not None:
            names |= {self._check_fusion(names)}
        if self.predictor is not None:
            names |= set(self._check_predictor(names))
        if len(names) < 2:
            raise ValueError("configure at least two modalities to align")
        for name, mod in self.modalities.items():
            self._check_modality(name, mod)
        check_backbone(self)
        self._check_objective(names)
        self._check_sources(names)
        return self

    def _check_modality(self, name: str, mod: ModalityConfig) -> None:
        """One tower's kind, options, encoder, tuner and init_from; fills in their defaults."""
        kind = mod.kind or name
        if kind not in MODALITIES:
            raise ValueError(
                f"modalities.{name}: unknown modality kind '{kind}' "
                f"(known: {', '.join(MODALITIES)})"
            )
        try:
            mod_opts = mod.modality_options(name)
        except ValidationError as exc:
            raise ValueError(_nested(exc, f"modalities.{name}.options")) from None
        try:
            enc_opts = mod.encoder_options()
        except ValidationError as exc:
            raise ValueError(_nested(exc, f"modalities.{name}.encoder")) from None
        except ConfigError as exc:  # an unknown or missing encoder type
            raise ValueError(f"modalities.{name}.encoder.type: {exc.detail}") from None
        # keep the filled-in options, so a saved run does not change when defaults do
        mod.options = mod_opts.model_dump(mode="json")
        mod.encoder = enc_opts.model_dump(mode="json")
        enc_cls = ENCODERS.get(enc_opts.type)
        if kind not in enc_cls.modalities:
            raise ValueError(
                f"modalities.{name}.encoder.type: '{enc_opts.type}' encodes "
                f"{', '.join(enc_cls.modalities)}, not {kind}"
            )
        reason = enc_cls.check(enc_opts, mod_opts)
        if reason:
            raise ValueError(f"modalities.{name}: {reason}")
        if mod.tuner is not None:
            mod.tuner = _tuner(mod.tuner, f"modalities.{name}.tuner")
        if mod.init_from is not None and (
            self.base is None or mod.init_from not in self.base.modalities
        ):
            raise ValueError(
                f"modalities.{name}.init_from: '{mod.init_from}' is not a modality of the "
                "base run (init_from is for `anybind extend`)"
            )

    def _check_objective(self, names: set[str]) -> None:
        """The objective's anchor, tuple and pairs against the configured modalities."""
        obj = self.objective
        if isinstance(obj, SymileConfig):
            tuple_ = self.symile_modalities()
            unknown = [m for m in tuple_ if m not in names]
            if unknown or len(tuple_) < 2:
                raise ValueError(
                    f"objective.modalities: needs two or more configured modalities, got {tuple_}"
                )
        else:
            if obj.pairs == "anchor" and obj.anchor is None:
                raise ValueError("objective.anchor: pairs='anchor' needs an anchor modality")
            if obj.anchor is not None and obj.anchor not in names:
                raise ValueError(f"objective.anchor: '{obj.anchor}' is not a configured modality")
        for pair in self.pairs():
            if self.base is not None and set(pair) <= set(self.base.modalities):
                raise ValueError(
                    f"objective.pairs: {list(pair)} are both base modalities, which stay frozen "
                    "(an extended run trains only its new modalities)"
                )
            if isinstance(obj, CWCLConfig) and obj.anchor not in pair:
                raise ValueError(
                    f"objective.pairs: cwcl weights each pair by the anchor '{obj.anchor}', "
                    f"and {list(pair)} does not hold it"
                )
            for m in pair:
                if m not in names:
                    raise ValueError(f"objective.pairs: '{m}' is not a configured modality")
            if pair[0] == pair[1]:
                raise ValueError(f"objective.pairs: a pair needs two modalities, got {pair}")

    def _check_sources(self, names: set[str]) -> None:
        """Every source provides only configured modalities."""
        for source in self.data.train + self.data.eval:
            used = _source_modalities(source)
            unknown = [m for m in used if m not in names]
            if unknown:
                raise ValueError(
                    f"data: source '{source.type}' provides {unknown}, which are "
                    "not configured modalities"
                )

    def _check_fusion(self, names: set[str]) -> str:
        """The fusion's checks; its `name` (a modality for the objective and evaluation)."""
        fusion = self.fusion
        assert fusion is not None
        if fusion.name in names:
            raise ValueError(f"fusion.name: '{fusion.name}' is already a configured modality")
        unknown = [m for m in [*fusion.modalities, *fusion.dropout] if m not in names]
        if unknown:
            raise ValueError(f"fusion.modalities: {unknown} are not configured modalities")
        if len(set(fusion.modalities)) != len(fusion.modalities):
            raise ValueError("fusion.modalities: a modality is listed twice")
        if fusion.fill == "predicted":
            predicted = set(self.predictor.modalities) if self.predictor else set()
            if not set(fusion.modalities) & predicted:
                raise ValueError("fusion.fill: 'predicted' needs a predictor of a fused modality")
        if fusion.type == "transformer" and self.space.dim % fusion.heads:
            raise ValueError(f"fusion.heads: {fusion.heads} does not divide space.dim")
        if self.optim.micro_batches > 1:
            raise ValueError("optim.micro_batches: not with a fusion module yet")
        return fusion.name

    def backbone_modalities(self) -> list[str]:
        """The modalities whose towers run the shared backbone."""
        return [m for m, mc in self.modalities.items() if mc.encoder.get("type") == "backbone"]

    def _check_predictor(self, names: set[str]) -> list[str]:
        """The predictor's checks; the names of its predicted modalities."""
        predictor = self.predictor
        assert predictor is not None
        unknown = [m for m in predictor.modalities if m not in names]
        if unknown:
            raise ValueError(f"predictor.modalities: {unknown} are not configured modalities")
        predicted = [f"{m}_predicted" for m in predictor.modalities]
        taken = [p for p in predicted if p in names]
        if taken:
            raise ValueError(f"predictor: {taken} are already configured modalities")
        if self.optim.micro_batches > 1:
            raise ValueError("optim.micro_batches: not with a predictor yet")
        if predictor.kind == "anchor" and not self.data.class_names:
            raise ValueError("predictor.kind: 'anchor' needs data.class_names")
        return predicted

    def _check_base(self, names: set[str]) -> None:
        base = self.base
        assert base is not None
        missing = [m for m in base.modalities if m not in names]
        if missing:
            raise ValueError(f"base.modalities: {missing} are not configured modalities")
        for m in base.modalities:
            mc = self.modalities[m]
            if not (mc.freeze_encoder and mc.freeze_projection):
                raise ValueError(f"modalities.{m}: a base modality stays frozen when extending")
        if self.space.learn_temperature:
            raise ValueError("space.learn_temperature: the base run's temperature stays frozen")
        if not set(names) - set(base.modalities) and self.fusion is None and not self.predictor:
            raise ValueError(
                "modalities: an extended run needs a modality beyond its base's, or a fusion"
            )

    def symile_modalities(self) -> list[str]:
        """The tuple a Symile objective scores (its `modalities`, default all configured)."""
        obj = self.objective
        listed = obj.modalities if isinstance(obj, SymileConfig) else None
        return list(listed or self.modalities)

    def trained_pairs(self) -> list[tuple[str, str]]:
        """Every pair trained together: this run's and, for an extended run, its base's."""
        return [*(self.base.pairs if self.base else []), *self.pairs()]

    def pairs(self) -> list[tuple[str, str]]:
        """The modality pairs the objective aligns (for Symile: every pair of its tuple, which
        is what evaluation scores as trained pairs)."""
        obj = self.objective
        if isinstance(obj, SymileConfig):
            tuple_ = self.symile_modalities()
            return [(a, b) for i, a in enumerate(tuple_) for b in tuple_[i + 1 :]]
        names = list(self.modalities)
        if obj.pairs == "all":
            return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        if obj.pairs == "anchor":
            return [(m, obj.anchor) for m in names if m != obj.anchor]  # type: ignore[misc]
        return [tuple(p) for p in obj.pairs]  # type: ignore[misc]


def _nested(exc: ValidationError, prefix: str) -> str:
    """Re-root the errors of a nested model under its dotted config key."""
    parts = []
    for err in exc.errors():
        key = ".".join([prefix, *(str(p) for p in err["loc"])])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{key}: {msg}")
    return "; ".join(parts)


def _tuner(raw: dict[str, Any], key: str) -> dict[str, Any]:
    """A tower's tuner section with its options validated and filled in."""
    from anybind.tuners import tuner_options

    if "type" not in raw:
        raise ValueError(f"{key}.type: name the tuner (lora, ia3, adapter, prompt)")
    options = {k: v for k, v in raw.items() if k != "type"}
    try:
        filled = tuner_options(str(raw["type"]), options, key=key)
    except ConfigError as exc:
        raise ValueError(f"{exc.key or key}: {exc.detail}") from None
    return {"type": raw["type"], **filled.model_dump(mode="json")}
