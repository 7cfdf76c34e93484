"""OpenCLIPModel: a tiny random open_clip-format ViT CLIP written here, checked against an
independent plain-torch forward of the same state dict, plus tokenizer and bad-file checks."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from rsgen.errors import RsgenError
from rsgen.models import build_model
from rsgen.models.loading import load_image_text_model
from rsgen.models.open_clip import OPENAI_MEAN, OPENAI_STD, OpenCLIPModel

WIDTH, LAYERS, PATCH, IMAGE, CONTEXT, EMBED, MLP = 128, 2, 8, 32, 16, 32, 512
MERGES = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o</w>"), ("w", "o"), ("r", "l"), ("wo", "rl")]
MERGES += [("worl", "d</w>"), ("a", "t</w>")]


def byte_chars() -> list[str]:
    """OpenAI CLIP's bytes_to_unicode() values, in its order (written out independently)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def tiny_vocab() -> dict[str, int]:
    chars = byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in MERGES]
    return {t: i for i, t in enumerate([*tokens, "<|startoftext|>", "<|endoftext|>"])}


VOCAB = tiny_vocab()
SOT, EOT = VOCAB["<|startoftext|>"], VOCAB["<|endoftext|>"]


def write_gz(path: Path) -> Path:
    lines = ["bpe_simple_vocab_16e6.txt#version: 0.2", *(" ".join(m) for m in MERGES)]
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    return path


def write_hf_tokenizer(folder: Path) -> Path:
    (folder / "vocab.json").write_text(json.dumps(VOCAB))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in MERGES) + "\n")
    return folder


def blocks(prefix: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    state = {}
    for i in range(LAYERS):
        p = f"{prefix}.resblocks.{i}."
        state.update(
            {
                p + "ln_1.weight": 1 + 0.1 * torch.randn(WIDTH, generator=gen),
                p + "ln_1.bias": 0.1 * torch.randn(WIDTH, generator=gen),
                p + "attn.in_proj_weight": torch.randn(3 * WIDTH, WIDTH, generator=gen) / math.sqrt(WIDTH),
                p + "attn.in_proj_bias": 0.1 * torch.randn(3 * WIDTH, generator=gen),
                p + "attn.out_proj.weight": torch.randn(WIDTH, WIDTH, generator=gen) / math.sqrt(WIDTH),
                p + "attn.out_proj.bias": 0.1 * torch.randn(WIDTH, generator=gen),
                p + "ln_2.weight": 1 + 0.1 * torch.randn(WIDTH, generator=gen),
                p + "ln_2.bias": 0.1 * torch.randn(WIDTH, generator=gen),
                p + "mlp.c_fc.weight": torch.randn(MLP, WIDTH, generator=gen) / math.sqrt(WIDTH),
                p + "mlp.c_fc.bias": 0.1 * torch.randn(MLP, generator=gen),
                p + "mlp.c_proj.weight": torch.randn(WIDTH, MLP, generator=gen) / math.sqrt(MLP),
                p + "mlp.c_proj.bias": 0.1 * torch.randn(WIDTH, generator=gen),
            }
        )
    return state


def tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random open_clip ViT CLIP state dict with open_clip's exact key names and shapes."""
    gen = torch.Generator().manual_seed(seed)
    grid = IMAGE // PATCH
    state = {
        "positional_embedding": 0.1 * torch.randn(CONTEXT, WIDTH, generator=gen),
        "text_projection": torch.randn(WIDTH, EMBED, generator=gen) / math.sqrt(WIDTH),
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
        "visual.class_embedding": 0.1 * torch.randn(WIDTH, generator=gen),
        "visual.positional_embedding": 0.1 * torch.randn(grid * grid + 1, WIDTH, generator=gen),
        "visual.proj": torch.randn(WIDTH, EMBED, generator=gen) / math.sqrt(WIDTH),
        "visual.conv1.weight": torch.randn(WIDTH, 3, PATCH, PATCH, generator=gen) / PATCH,
        "visual.ln_pre.weight": 1 + 0.1 * torch.randn(WIDTH, generator=gen),
        "visual.ln_pre.bias": 0.1 * torch.randn(WIDTH, generator=gen),
    }
    state.update(blocks("visual.transformer", gen))
    state["visual.ln_post.weight"] = 1 + 0.1 * torch.randn(WIDTH, generator=gen)
    state["visual.ln_post.bias"] = 0.1 * torch.randn(WIDTH, generator=gen)
    state.update(blocks("transformer", gen))
    state["token_embedding.weight"] = torch.randn(len(VOCAB), WIDTH, generator=gen)
    state["ln_final.weight"] = 1 + 0.1 * torch.randn(WIDTH, generator=gen)
    state["ln_final.bias"] = 0.1 * torch.randn(WIDTH, generator=gen)
    return state


# ----------------------------------------------------------------------------- reference forward


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def ref_block(x, sd, p, heads, act, mask=None):
    batch, length, width = x.shape
    h = F.layer_norm(x, (width,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-5)
    q, k, v = F.linear(h, sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"]).chunk(3, dim=-1)
    q, k, v = (t.reshape(batch, length, heads, -1).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if mask is not None:
        scores = scores + mask
    attn = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, width)
    x = x + F.linear(attn, sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"])
    h = F.layer_norm(x, (width,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-5)
    h = F.linear(act(F.linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])), *_proj(sd, p))
    return x + h


def _proj(sd, p):
    return sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"]


def ref_image(sd, pixels, heads, act):
    x = F.conv2d(pixels, sd["visual.conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    x = F.layer_norm(x, (WIDTH,), sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"], 1e-5)
    for i in range(LAYERS):
        x = ref_block(x, sd, f"visual.transformer.resblocks.{i}.", heads, act)
    x = F.layer_norm(x[:, 0], (WIDTH,), sd["visual.ln_post.weight"], sd["visual.ln_post.bias"], 1e-5)
    return x @ sd["visual.proj"]


def ref_text(sd, ids, heads, act):
    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"]
    mask = torch.full((CONTEXT, CONTEXT), float("-inf")).triu(1)
    for i in range(LAYERS):
        x = ref_block(x, sd, f"transformer.resblocks.{i}.", heads, act, mask)
    x = F.layer_norm(x, (WIDTH,), sd["ln_final.weight"], sd["ln_final.bias"], 1e-5)
    return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ sd["text_projection"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_installed_open_clip(monkeypatch):
    """Tokenizer search must not depend on whether open_clip happens to be installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("open_clip", "clip") else real(name, *a),
    )


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return tiny_state()


@pytest.fixture
def weights(tmp_path, state) -> Path:
    """The tiny CLIP as RemoteCLIP-style .pt with the HF-format tokenizer files next to it."""
    folder = tmp_path / "clip"
    folder.mkdir()
    write_hf_tokenizer(folder)
    torch.save(state, folder / "tiny-clip.pt")
    return folder / "tiny-clip.pt"


def images(batch: int = 2, size: tuple[int, int] = (IMAGE, IMAGE), seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def normalised(x: torch.Tensor, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    return ((x + 1) / 2 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


TEXTS = ["hello world", "a cat at the world", "hello hello world hello"]


# ----------------------------------------------------------------------------- loading and equivalence


def test_loads_pt_and_safetensors_through_load_image_text_model(weights, state):
    save_file(state, weights.with_suffix(".safetensors"))
    models = [load_image_text_model(p) for p in (weights, weights.with_suffix(".safetensors"))]
    for model in models:
        assert isinstance(model, OpenCLIPModel) and not model.training
        assert (model.name, model.image_size, model.embed_dim) == ("open_clip:tiny-clip", IMAGE, EMBED)
        emb = model.encode_image(images())
        assert emb.shape == (2, EMBED)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
        assert model.encode_text(TEXTS).shape == (3, EMBED)
        assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    torch.testing.assert_close(models[0].encode_image(images()), models[1].encode_image(images()))


@pytest.mark.parametrize("quick", [False, True])
def test_both_towers_match_a_plain_torch_reference(weights, state, quick):
    model = OpenCLIPModel.from_file(weights, quick_gelu=quick)
    act = quick_gelu if quick else F.gelu
    x = images(3)
    with torch.no_grad():
        got_image = model.encode_image(x, normalize=False)
        got_text = model.encode_text(TEXTS, normalize=False)
    ids = model.tokenize(TEXTS)
    torch.testing.assert_close(got_image, ref_image(state, normalised(x), 2, act), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_text, ref_text(state, ids, 2, act), atol=1e-5, rtol=1e-5)
    # The activation matters: the other variant is measurably different.
    other = F.gelu if quick else quick_gelu
    assert (got_image - ref_image(state, normalised(x), 2, other)).abs().max() > 1e-3


def test_open_clip_config_json_sets_heads_activation_and_normalisation(weights, state):
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    config = {
        "model_cfg": {
            "embed_dim": EMBED,
            "quick_gelu": True,
            "vision_cfg": {
                "image_size": IMAGE,
                "layers": LAYERS,
                "width": WIDTH,
                "patch_size": PATCH,
                "head_width": 32,
            },
            "text_cfg": {"context_length": CONTEXT, "vocab_size": len(VOCAB), "width": WIDTH, "heads": 8},
        },
        "preprocess_cfg": {"mean": mean, "std": std},
    }
    (weights.parent / "open_clip_config.json").write_text(json.dumps(config))
    model = OpenCLIPModel.from_file(weights)
    x = images(2)
    with torch.no_grad():
        got_image, got_text = (
            model.encode_image(x, normalize=False),
            model.encode_text(TEXTS, normalize=False),
        )
    torch.testing.assert_close(
        got_image, ref_image(state, normalised(x, mean, std), 4, quick_gelu), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        got_text, ref_text(state, model.tokenize(TEXTS), 8, quick_gelu), atol=1e-5, rtol=1e-5
    )
    with pytest.raises(RsgenError, match="open_clip_config.json.*quick_gelu"):
        OpenCLIPModel.from_file(weights, quick_gelu=False)
    config["model_cfg"]["text_cfg"]["width"] = 256
    (weights.parent / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(RsgenError, match="open_clip_config.json.*width 256"):
        OpenCLIPModel.from_file(weights)


def test_wrapped_fp16_openai_state_dict_uses_quick_gelu(tmp_path, state):
    # An OpenAI-style state dict: fp16, TorchScript metadata keys, nested and DataParallel-prefixed.
    wrapped = {f"module.{k}": v.half() for k, v in state.items()}
    wrapped.update(
        {"module.input_resolution": IMAGE, "module.context_length": CONTEXT, "module.vocab_size": 1}
    )
    path = tmp_path / "ViT-tiny.pth"
    torch.save({"epoch": 3, "state_dict": wrapped}, path)
    model = OpenCLIPModel.from_file(path)
    half = {k: v.half().float() for k, v in state.items()}
    x = images(1)
    with torch.no_grad():
        got = model.encode_image(x, normalize=False)
    torch.testing.assert_close(got, ref_image(half, normalised(x), 2, quick_gelu), atol=1e-5, rtol=1e-5)


def test_gradient_of_similarity_reaches_the_pixels(weights):
    model = OpenCLIPModel.from_file(weights)
    x = images(1, (40, 56)).requires_grad_(True)
    similarity = (model.encode_image(x) @ model.encode_text(["hello world"]).T).sum()
    similarity.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("size", [(20, 50), (64, 64), (33, 17), (32, 32)])
def test_any_image_size_is_resized_and_cropped(weights, size):
    model = OpenCLIPModel.from_file(weights)
    x = images(2, size)
    assert model.preprocess(x).shape == (2, 3, IMAGE, IMAGE)
    emb = model.encode_image(x)
    assert emb.shape == (2, EMBED) and torch.isfinite(emb).all()


# ----------------------------------------------------------------------------- tokenizer


def test_tokenizer_ids_padding_and_truncation(weights):
    model = OpenCLIPModel.from_file(weights)
    hello, world = VOCAB["hello</w>"], VOCAB["world</w>"]
    ids = model.tokenize(["hello world", "  Hello \n\t WORLD ", "cat", "hello " * 30])
    assert ids.shape == (4, CONTEXT) and ids.dtype == torch.long
    assert ids[0].tolist() == [SOT, hello, world, EOT] + [0] * (CONTEXT - 4)
    assert torch.equal(ids[0], ids[1])
    assert ids[2, :4].tolist() == [SOT, VOCAB["c"], VOCAB["at</w>"], EOT]
    assert ids[3].tolist() == [SOT] + [hello] * (CONTEXT - 2) + [EOT]
    assert int(ids.max()) < len(VOCAB)


def test_tokenizer_sources_agree(tmp_path, weights, state, monkeypatch):
    expected = OpenCLIPModel.from_file(weights).tokenize(TEXTS)
    gz = write_gz(tmp_path / "bpe_simple_vocab_16e6.txt.gz")
    bare = tmp_path / "bare"
    bare.mkdir()
    torch.save(state, bare / "tiny-clip.pt")
    assert torch.equal(OpenCLIPModel.from_file(bare / "tiny-clip.pt", tokenizer=gz).tokenize(TEXTS), expected)
    assert torch.equal(OpenCLIPModel.from_file(weights, tokenizer=weights.parent).tokenize(TEXTS), expected)
    # An installed open_clip package is found without importing it.
    package = tmp_path / "site" / "open_clip"
    package.mkdir(parents=True)
    write_gz(package / "bpe_simple_vocab_16e6.txt.gz")
    fake = SimpleNamespace(submodule_search_locations=[str(package)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: fake if name == "open_clip" else None)
    assert torch.equal(OpenCLIPModel.from_file(bare / "tiny-clip.pt").tokenize(TEXTS), expected)


def test_missing_or_bad_tokenizer(tmp_path, state):
    path = tmp_path / "tiny-clip.pt"
    torch.save(state, path)
    model = OpenCLIPModel.from_file(path)  # the image tower works without a tokenizer
    assert model.encode_image(images(1)).shape == (1, EMBED)
    with pytest.raises(RsgenError) as info:
        model.encode_text(["hello"])
    message = str(info.value)
    assert str(path) in message and "vocab.json" in message and "bpe_simple_vocab_16e6.txt.gz" in message
    with pytest.raises(RsgenError, match="nowhere"):
        OpenCLIPModel.from_file(path, tokenizer=tmp_path / "nowhere")
    (tmp_path / "bad.txt.gz").write_bytes(b"not gzip")
    with pytest.raises(RsgenError, match="bad.txt.gz"):
        OpenCLIPModel.from_file(path, tokenizer=tmp_path / "bad.txt.gz")
    small = {k: v for k, v in state.items()}
    small["token_embedding.weight"] = small["token_embedding.weight"][:300]
    torch.save(small, path)
    write_hf_tokenizer(tmp_path)
    with pytest.raises(RsgenError, match="tokenizer .* has 523 tokens"):
        OpenCLIPModel.from_file(path)


# ----------------------------------------------------------------------------- bad weight files


def _edited(state, drop=(), add=None, reshape=None):
    edited = {k: v for k, v in state.items() if k not in drop}
    edited.update(add or {})
    for key, shape in (reshape or {}).items():
        edited[key] = torch.zeros(shape)
    return edited


BAD_STATES = {
    "resnet": ({"add": {"visual.layer1.0.conv1.weight": torch.zeros(4, 4, 1, 1)}}, "ResNet.*visual.layer1"),
    "layer-scale": (
        {"add": {"visual.transformer.resblocks.0.ls_1.gamma": torch.zeros(WIDTH)}},
        "layer-scale",
    ),
    "attn-pool": ({"add": {"visual.attn_pool.query": torch.zeros(4, WIDTH)}}, "attentional pooler"),
    "missing": (
        {"drop": ["transformer.resblocks.1.ln_2.bias"]},
        "missing key transformer.resblocks.1.ln_2.bias",
    ),
    "no-text": ({"drop": ["token_embedding.weight"]}, "missing key token_embedding.weight"),
    "mis-shaped": ({"reshape": {"text_projection": (WIDTH, EMBED + 1)}}, "text_projection has shape"),
    "bad-grid": ({"reshape": {"visual.positional_embedding": (18, WIDTH)}}, "visual.positional_embedding"),
    "unexpected": ({"add": {"logit_bias": torch.zeros(())}}, "unexpected key logit_bias"),
}


@pytest.mark.parametrize("case", BAD_STATES)
def test_bad_state_dicts_name_the_file_and_key(tmp_path, state, case):
    edit, pattern = BAD_STATES[case]
    path = tmp_path / f"{case}.pt"
    torch.save(_edited(state, **edit), path)
    with pytest.raises(RsgenError, match=pattern) as info:
        load_image_text_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _degan_state():
    return build_model(
        {"name": "degan_discriminator", "base_channels": 4, "num_blocks": 2, "fc_size": 8}
    ).state_dict()


def _torchscript(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, the files remain
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)


BAD_FILES = {
    "random.pt": (lambda p: p.write_bytes(os.urandom(512)), "cannot read weight file"),
    "random.safetensors": (lambda p: p.write_bytes(os.urandom(512)), "cannot read weight file"),
    "empty.pt": (lambda p: p.write_bytes(b""), "cannot read weight file \\(it is empty\\)"),
    "tensor.pt": (lambda p: torch.save(torch.zeros(3), p), "holds a Tensor, not a state dict"),
    "degan.pt": (lambda p: torch.save(_degan_state(), p), "no visual.* keys"),
    "hf.safetensors": (lambda p: save_file({"vision_model.x": torch.zeros(1)}, p), "Hugging Face"),
    "jit.pt": (_torchscript, "TorchScript"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_weight_files_name_the_file(tmp_path, name):
    write, pattern = BAD_FILES[name]
    path = tmp_path / name
    write(path)
    with pytest.raises(RsgenError, match=pattern) as info:
        load_image_text_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_open_clip_hub_folder_loads_by_folder_name(weights, state) -> None:
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(weights.parent / "open_clip_model.safetensors")
    )
    weights.unlink()
    model = load_image_text_model(weights.parent)
    assert model.name == "open_clip:clip"
    assert model.encode_text(["a river"]).shape[0] == 1
