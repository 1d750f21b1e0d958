"""Tuners (lora, ia3, adapter, prompt) on every encoder family they support.

Tiny random Hugging Face models are saved once per module (as in test_hf_encoders.py) and loaded
back through anybind's encoders; the built-in CNN / byte-transformer encoders are built with a
fixed seed, so a "fresh tower" has exactly the same base weights as the first one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import safetensors.torch
import torch
from torch import nn
from transformers import (
    ASTConfig,
    ASTModel,
    BertConfig,
    BertModel,
    BertTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    ViTConfig,
    ViTModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
)

from anybind.encoders.builtin_audio import AudioCNN, AudioCNNOptions
from anybind.encoders.builtin_image import ImageCNN, ImageCNNOptions
from anybind.encoders.builtin_text import ByteTransformer, ByteTransformerOptions
from anybind.encoders.hf_audio import HFAudio
from anybind.encoders.hf_text import HFText
from anybind.encoders.hf_vision import HFVision
from anybind.encoders.speech_embedding import SpeechEmbedding, SpeechEmbeddingOptions
from anybind.encoders.window_pool import WindowPool, WindowPoolOptions
from anybind.errors import AnybindError, ConfigError
from anybind.modalities.audio import AudioModality, AudioOptions
from anybind.modalities.image import ImageModality, ImageOptions
from anybind.modalities.text import TextModality
from anybind.space.model import Tower
from anybind.tuners import TUNERS, Tuner, build_tuner

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
CONV = dict(
    conv_dim=(16, 16),
    conv_kernel=(10, 3),
    conv_stride=(5, 2),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    vocab_size=12,
)
WORDS = ["a", "photo", "of", "dog", "cat", "the", "sat", "on", "mat", "big", "red", "seven"]
WAVE_AUDIO = AudioOptions(sample_rate=16000, representation="waveform", max_seconds=0.1)
SPEECH_WAVE = AudioOptions(sample_rate=16000, representation="waveform", max_seconds=1.0)
SPEECH_FEATURES = AudioOptions(sample_rate=16000, representation="speech_embedding")

CNN_ENCODERS = ["image_cnn", "audio_cnn", "text_bytes", "window_pool", "speech_embedding"]
HF_ENCODERS = ["hf_text", "hf_vit", "hf_clip", "hf_wav2vec2", "hf_ast"]
ENCODERS = CNN_ENCODERS + HF_ENCODERS
SUPPORTED = [(t, e) for t in ("lora", "ia3", "adapter") for e in ENCODERS] + [
    ("prompt", e) for e in HF_ENCODERS
]


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """These models are tiny: one intra-op thread avoids OpenMP hand-offs, which cost far more
    than the work itself (and a lot more again when other processes keep the cores busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    torch.manual_seed(0)
    bert = tmp_path_factory.mktemp("tiny_bert")
    vocab = bert / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(bert)
    BertModel(
        BertConfig(vocab_size=len(WORDS) + 5, max_position_embeddings=64, **TINY)
    ).save_pretrained(bert)
    out["hf_text"] = bert
    models = {
        "hf_vit": ViTModel(ViTConfig(image_size=16, patch_size=8, **TINY)),
        "hf_clip": CLIPVisionModel(CLIPVisionConfig(image_size=16, patch_size=8, **TINY)),
        "hf_wav2vec2": Wav2Vec2Model(Wav2Vec2Config(**TINY, **CONV)),
        "hf_ast": ASTModel(
            ASTConfig(
                patch_size=16,
                frequency_stride=10,
                time_stride=10,
                max_length=32,
                num_mel_bins=16,
                **TINY,
            )
        ),
    }
    for name, model in models.items():
        out[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(out[name])
    (out["hf_vit"] / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3})
    )
    return out


def _encoder(kind: str, folders: dict[str, Path], **kw: Any) -> nn.Module:
    torch.manual_seed(0)
    if kind == "image_cnn":
        image = ImageModality(ImageOptions(size=(8, 8)))
        return ImageCNN(ImageCNNOptions(width=8, stages=2), image)
    if kind == "audio_cnn":
        return AudioCNN(AudioCNNOptions(width=4, stages=3), AudioModality(AudioOptions()))
    if kind == "text_bytes":
        options = ByteTransformerOptions(width=16, layers=1, heads=2, max_bytes=24)
        return ByteTransformer(options, TextModality())
    if kind == "window_pool":
        return WindowPool(WindowPoolOptions(hidden=8), AudioModality(SPEECH_FEATURES))
    if kind == "speech_embedding":
        return SpeechEmbedding(SpeechEmbeddingOptions(), AudioModality(SPEECH_WAVE))
    path = str(folders[kind])
    if kind == "hf_text":
        return HFText(HFText.Options(path=path, **kw), TextModality())
    if kind in ("hf_vit", "hf_clip"):
        image = ImageModality(ImageOptions(channels=3, size=(16, 16)))
        return HFVision(HFVision.Options(path=path, **kw), image)
    return HFAudio(HFAudio.Options(path=path), AudioModality(WAVE_AUDIO))


def make_tower(kind: str, folders: dict[str, Path], **kw: Any) -> Tower:
    encoder = _encoder(kind, folders, **kw)
    torch.manual_seed(1)
    projection = nn.Linear(encoder.embed_dim, 8)
    return Tower(encoder.modality, encoder, projection).eval()  # type: ignore[arg-type]


def make_batch(kind: str) -> Any:
    gen = torch.Generator().manual_seed(2)
    if kind == "image_cnn":
        return torch.rand(3, 1, 8, 8, generator=gen)
    if kind == "audio_cnn":
        return torch.randn(3, 40, 32, generator=gen)
    if kind == "text_bytes":
        return ["abc", "hello world", "seven"]
    if kind == "window_pool":
        return torch.randn(3, 3, 96, generator=gen)
    if kind == "speech_embedding":
        t = torch.arange(16000) / 16000
        tones = torch.sin(2 * torch.pi * 300 * t) * torch.tensor([[0.2], [0.5]])
        return (tones + 0.05 * torch.randn(2, 16000, generator=gen)).float()
    if kind == "hf_text":
        return ["a photo of a dog", "the cat sat on the mat", "seven"]
    if kind in ("hf_vit", "hf_clip"):
        return torch.rand(2, 3, 16, 16, generator=gen)
    t = torch.arange(1600) / 16000
    tones = torch.sin(2 * torch.pi * 440 * t) * torch.tensor([[0.2], [0.5]])
    return (tones + 0.05 * torch.randn(2, 1600, generator=gen)).float()


def attached(name: str, kind: str, folders: dict[str, Path], **options: Any) -> tuple[Tower, Tuner]:
    tower = make_tower(kind, folders)
    tuner = build_tuner(name, options)
    tuner.attach(tower)
    return tower, tuner


def perturb(tuner: Tuner, scale: float = 0.1) -> None:
    """Move every tuner tensor away from its identity initialisation (B = 0, scales = 1, ...)."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in tuner.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(before: dict[str, torch.Tensor], module: nn.Module) -> None:
    after = module.state_dict()
    assert list(after) == list(before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, changed


# --------------------------------------------------------------------------------- table tests


@pytest.mark.parametrize(("name", "kind"), SUPPORTED)
def test_attach_freezes_base_and_trains_only_the_tuner(
    name: str, kind: str, folders: dict[str, Path]
) -> None:
    tower = make_tower(kind, folders)
    x = make_batch(kind)
    with torch.no_grad():
        base = tower.features(x)
    base_params = list(tower.parameters())
    base_state = snapshot(tower)
    tuner = build_tuner(name, {})
    tuner.attach(tower)
    own = tuner.parameters()
    assert own and all(p.requires_grad for p in own)
    assert not any(p.requires_grad for p in base_params)
    assert {id(p) for p in tower.parameters() if p.requires_grad} == {id(p) for p in own}

    with torch.no_grad():
        start = tower.features(x)
    if name != "prompt":  # lora B = 0, ia3 scales = 1, adapter up = 0: nothing changes yet
        torch.testing.assert_close(start, base, atol=1e-6, rtol=0)

    target = torch.nn.functional.normalize(torch.randn(len(x), 8), dim=-1)
    opt = torch.optim.SGD(own, lr=0.1)
    losses = []
    for step in range(3):
        opt.zero_grad()
        loss = (tower(x) - target).pow(2).sum()
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            assert all(p.grad is None for p in base_params)
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
            if name == "prompt":
                assert own[0].grad is not None and own[0].grad.abs().sum() > 0
        opt.step()
    with torch.no_grad():
        after = tower.features(x)
    assert (after - start).abs().max() > 1e-5
    assert losses[-1] < losses[0]
    tuner.detach()
    assert_same_state(base_state, tower)  # SGD touched the tuner only


@pytest.mark.parametrize(("name", "kind"), SUPPORTED)
def test_state_dict_round_trip_and_detach(
    name: str, kind: str, folders: dict[str, Path], tmp_path: Path
) -> None:
    tower = make_tower(kind, folders)
    x = make_batch(kind)
    with torch.no_grad():
        base = tower.features(x)
    original = snapshot(tower)
    flags = [p.requires_grad for p in tower.parameters()]
    module_names = [(n, type(m)) for n, m in tower.named_modules()]

    tuner = build_tuner(name, {})
    tuner.attach(tower)
    perturb(tuner)
    with torch.no_grad():
        adapted = tower.features(x)
    assert (adapted - base).abs().max() > 1e-5

    state = tuner.state_dict()
    assert state and set(state).isdisjoint(original)
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in tuner.parameters())
    assert all(v.device.type == "cpu" and v.is_contiguous() for v in state.values())
    safetensors.torch.save_file(state, tmp_path / "tuner.safetensors")
    state = safetensors.torch.load_file(tmp_path / "tuner.safetensors")

    fresh = make_tower(kind, folders)
    other = build_tuner(name, tuner.options.model_dump())
    other.attach(fresh)
    other.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(fresh.features(x), adapted, atol=1e-6, rtol=0)

    tuner.detach()
    assert_same_state(original, tower)
    assert [(n, type(m)) for n, m in tower.named_modules()] == module_names
    assert [p.requires_grad for p in tower.parameters()] == flags
    assert not {"forward", "peft_config", "_anybind_tuner_name"} & set(tower.encoder.__dict__)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tower.modules())
    with torch.no_grad():
        assert torch.equal(tower.features(x), base)


@pytest.mark.parametrize(("name", "kind"), SUPPORTED)
def test_merge_and_unmerge(name: str, kind: str, folders: dict[str, Path]) -> None:
    tower, tuner = attached(name, kind, folders)
    x = make_batch(kind)
    if not tuner.mergeable:
        with pytest.raises(AnybindError, match="cannot be merged"):
            tuner.merge()
        with pytest.raises(AnybindError, match="cannot be merged"):
            tuner.unmerge()
        return
    perturb(tuner)
    base_weights = {k: v for k, v in snapshot(tower).items() if k not in tuner.state_dict()}
    with torch.no_grad():
        unmerged = tower.features(x)
        tuner.merge()
        merged = tower.features(x)
    # float32 rounding grows with depth and scale (20 convolutions, outputs up to ~50 for
    # speech_embedding): the tolerance is relative to the largest output
    scale = max(1.0, float(unmerged.abs().max()))
    torch.testing.assert_close(merged, unmerged, atol=1e-5 * scale, rtol=1e-5)
    with pytest.raises(AnybindError, match="unmerge it"):
        tuner.load_state_dict(tuner.state_dict())
    now = tower.state_dict()
    assert any(not torch.equal(now[k], v) for k, v in base_weights.items())  # really folded
    tuner.unmerge()
    now = tower.state_dict()
    for k, v in base_weights.items():
        torch.testing.assert_close(now[k], v, atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(tower.features(x), unmerged, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- errors, registry


@pytest.mark.parametrize("kind", CNN_ENCODERS)
def test_prompt_needs_a_transformer_encoder(kind: str, folders: dict[str, Path]) -> None:
    tower = make_tower(kind, folders)
    state = snapshot(tower)
    tuner = build_tuner("prompt", {})
    with pytest.raises(AnybindError, match=f"needs a transformer encoder.*uses {kind}"):
        tuner.attach(tower)
    assert not tuner.attached
    assert all(p.requires_grad for p in tower.parameters())
    assert_same_state(state, tower)


def test_prompt_refuses_options_of_the_other_method(folders: dict[str, Path]) -> None:
    with pytest.raises(AnybindError, match="n_tokens"):
        build_tuner("prompt", {"n_tokens": 3}).attach(make_tower("hf_text", folders))
    with pytest.raises(AnybindError, match="ctx_init"):
        build_tuner("prompt", {"ctx_init": "a dog"}).attach(make_tower("hf_vit", folders))


def test_adapter_and_lora_errors_name_the_problem(folders: dict[str, Path]) -> None:
    tower = make_tower("image_cnn", folders)
    with pytest.raises(AnybindError, match="'body.9'"):
        build_tuner("adapter", {"targets": ["body.9"]}).attach(tower)
    with pytest.raises(AnybindError, match="image_cnn"):
        build_tuner("lora", {"target_modules": ["nothing_here"]}).attach(tower)
    state = snapshot(tower)
    with pytest.raises(AnybindError, match="image_cnn"):  # Conv2d then BatchNorm2d (no LoRA)
        build_tuner("lora", {"target_modules": ["body.0.0", "body.0.1"]}).attach(tower)
    assert_same_state(state, tower)
    assert all(p.requires_grad for p in tower.parameters())
    assert "peft_config" not in tower.encoder.__dict__
    tuner = build_tuner("lora", {"target_modules": ["body.0.0"]})
    tuner.attach(tower)
    assert set(tuner.state_dict()) == {"body.0.0.lora_A.weight", "body.0.0.lora_B.weight"}
    with pytest.raises(AnybindError, match="already has a 'lora' tuner"):
        build_tuner("ia3", {}).attach(tower)
    tuner.detach()
    with pytest.raises(AnybindError, match="not attached"):
        tuner.state_dict()


@pytest.mark.parametrize("name", sorted(TUNERS))
def test_load_state_dict_names_bad_keys(name: str, folders: dict[str, Path]) -> None:
    kind = "hf_vit" if name == "prompt" else "image_cnn"
    tower, tuner = attached(name, kind, folders)
    state = tuner.state_dict()
    first = sorted(state)[0]
    with pytest.raises(AnybindError, match=f"missing \\[{first}"):
        tuner.load_state_dict({k: v for k, v in state.items() if k != first})
    with pytest.raises(AnybindError, match="unexpected \\[extra.weight"):
        tuner.load_state_dict({**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(AnybindError, match=f"mis-shaped \\[{first}"):
        tuner.load_state_dict({**state, first: torch.zeros(*state[first].shape, 2)})
    tuner.load_state_dict(state)


def test_build_tuner_rejects_unknown_names_and_options() -> None:
    assert set(TUNERS) == {"lora", "ia3", "adapter", "prompt"}
    with pytest.raises(ConfigError, match="unknown tuner 'dora'"):
        build_tuner("dora", {})
    with pytest.raises(ConfigError, match="unknown option 'rank' for tuner 'lora'") as info:
        build_tuner("lora", {"rank": 4})
    assert info.value.key == "tuner.rank"
    with pytest.raises(ConfigError, match="'r'"):
        build_tuner("lora", {"r": 0})
    with pytest.raises(ConfigError, match="unknown option 'depth'"):
        build_tuner("prompt", {"depth": 2})
    lora = build_tuner("lora", {"r": 4, "target_modules": "body\\..*"})
    assert lora.options.model_dump() == {
        "r": 4,
        "alpha": 16.0,
        "dropout": 0.0,
        "target_modules": "body\\..*",
    }
    assert build_tuner("adapter", None).options.model_dump() == {"reduction": 4, "targets": None}


def test_default_targets(folders: dict[str, Path]) -> None:
    _, lora = attached("lora", "hf_text", folders)
    leaves = {k.split(".lora_")[0].split("layer.0.")[-1] for k in lora.state_dict() if ".0." in k}
    assert leaves == {
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    }
    _, ia3 = attached("ia3", "hf_clip", folders)
    shapes = {k.split("layers.0.")[-1]: tuple(v.shape) for k, v in ia3.state_dict().items()}
    assert {k: v for k, v in shapes.items() if "layers.1" not in k} == {
        "self_attn.k_proj.ia3_l": (32, 1),  # output scaling
        "self_attn.v_proj.ia3_l": (32, 1),
        "mlp.fc2.ia3_l": (1, 37),  # feed-forward: scales the MLP activations (fc2's input)
    }
    _, adapter = attached("adapter", "audio_cnn", folders)
    assert sorted({k.rsplit(".", 2)[0] for k in adapter.state_dict()}) == ["body.3", "body.5"]


# ------------------------------------------------------------------------------- CoOp and VPT


def test_coop_context_equals_a_written_prefix(folders: dict[str, Path]) -> None:
    plain = _encoder("hf_text", folders).eval()
    tower = make_tower("hf_text", folders)
    tower.cache_features = True  # a frozen text tower memoises; prompts must switch that off
    tuner = build_tuner("prompt", {"n_ctx": 4})  # ctx_init "a photo of a": 4 tokens
    tuner.attach(tower)
    assert not tower.cache_features
    texts = ["seven", "big red dog", "the cat sat on the mat"]
    with torch.no_grad():
        ours = tower.features(texts)
        ref = plain([f"a photo of a {t}" for t in texts])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)

    # any string s: ctx = the word embeddings of its tokens gives the plain encoding of "s text"
    words = "the big red dog"
    ids = plain.tokenizer(words, add_special_tokens=False)["input_ids"]
    assert len(ids) == 4
    table = plain.model.get_input_embeddings().weight.detach()
    tuner.load_state_dict({"ctx": table[torch.tensor(ids)].clone()})
    with torch.no_grad():
        torch.testing.assert_close(
            tower.features(["seven"]), plain([f"{words} seven"]), atol=1e-5, rtol=1e-5
        )
    tuner.detach()
    assert tower.cache_features


def test_coop_cls_pooling_and_random_init(folders: dict[str, Path]) -> None:
    plain = _encoder("hf_text", folders, pooling="cls").eval()
    tower = make_tower("hf_text", folders, pooling="cls")
    tuner = build_tuner("prompt", {"n_ctx": 2, "ctx_init": "a photo of a"})
    tuner.attach(tower)
    with torch.no_grad():  # the first n_ctx tokens of ctx_init
        torch.testing.assert_close(
            tower.features(["seven"]), plain(["a photo seven"]), atol=1e-5, rtol=1e-5
        )
    tuner.detach()
    torch.manual_seed(0)
    tuner = build_tuner("prompt", {"n_ctx": 16, "ctx_init": None})
    tuner.attach(tower)
    ctx = tuner.state_dict()["ctx"]
    assert ctx.shape == (16, 32) and 0.01 < float(ctx.std()) < 0.03


@pytest.mark.parametrize("deep", [False, True])
def test_vpt_matches_manual_insertion(deep: bool, folders: dict[str, Path]) -> None:
    tower = make_tower("hf_vit", folders, pooling="cls")
    tuner = build_tuner("prompt", {"n_tokens": 3, "deep": deep})
    tuner.attach(tower)
    perturb(tuner)
    prompts = tuner.state_dict()["prompts"]
    assert prompts.shape == ((2 if deep else 1), 3, 32)
    images = make_batch("hf_vit")
    with torch.no_grad():
        ours = tower.features(images)

    ref = _encoder("hf_vit", folders, pooling="cls").eval()
    model: Any = ref.model
    with torch.no_grad():
        x = model.embeddings(ref.pixel_values(images))  # (B, 1 + patches, H), CLS first
        b = x.shape[0]
        x = torch.cat([x[:, :1], prompts[0].expand(b, -1, -1), x[:, 1:]], dim=1)
        for i, layer in enumerate(model.layers):
            if deep and i > 0:
                x = torch.cat([x[:, :1], prompts[i].expand(b, -1, -1), x[:, 4:]], dim=1)
            x = layer(x)
        expected = model.layernorm(x)[:, 0]
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("kind", "leading"), [("hf_clip", 1), ("hf_ast", 2), ("hf_wav2vec2", 0)])
def test_vpt_goes_after_the_summary_tokens(
    kind: str, leading: int, folders: dict[str, Path]
) -> None:
    """Reference: a plain encoder whose first transformer layer gets the prompts spliced into its
    input by a hand-written hook, after `leading` summary tokens (CLIP: CLS; AST: CLS and
    distillation; wav2vec2: none)."""
    tower, tuner = attached("prompt", kind, folders, n_tokens=5)
    perturb(tuner)
    prompts = tuner.state_dict()["prompts"][0]
    x = make_batch(kind)
    with torch.no_grad():
        ours = tower.features(x)

    def splice(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        h = args[0]
        p = prompts.expand(h.shape[0], -1, -1)
        return (torch.cat([h[:, :leading], p, h[:, leading:]], dim=1), *args[1:])

    ref = make_tower(kind, folders)
    first = "layers.0" if kind == "hf_ast" else "encoder.layers.0"
    ref.encoder.model.get_submodule(first).register_forward_pre_hook(splice)  # type: ignore[union-attr]
    with torch.no_grad():
        expected = ref.features(x)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        base = make_tower(kind, folders).features(x)
    assert (ours - base).abs().max() > 1e-4
