"""The RSVQ-Diffusion denoising transformer: shapes, gradients, locality of LMA, relative 2-D
RoPE (SP), the text mask, the null context of classifier-free guidance, folders, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsgen.errors import RsgenError
from rsgen.models import build_model
from rsgen.models.diffusion_transformer import (
    ABLATIONS,
    DiffusionTransformer,
    DiffusionTransformerConfig,
    rope_2d,
)

K, TEXT_DIM = 16, 12
TINY = {
    "name": "rsvq_transformer",
    "num_classes": K,
    "grid": [8, 8],
    "width": 16,
    "depth": 2,
    "heads": 2,
    "mlp_ratio": 2.0,
    "text_dim": TEXT_DIM,
    "max_text_tokens": 6,
    "num_timesteps": 10,
    "window": 4,
}


def tiny(seed: int = 0, **overrides) -> DiffusionTransformer:
    torch.manual_seed(seed)
    return build_model({**TINY, **overrides}).eval()


def inputs(batch: int = 2, length: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, K + 1, (batch, 8, 8), generator=g)
    t = torch.randint(0, 10, (batch,), generator=g)
    text = torch.randn(batch, length, TEXT_DIM, generator=g)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 3:] = False
    return ids, t, text, mask


@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_every_ablation_builds_and_gives_logits_over_the_real_codes(ablation: str):
    model = tiny(**ABLATIONS[ablation])
    assert isinstance(model, DiffusionTransformer) and model.mask_id == K
    logits = model(*inputs())
    assert logits.shape == (2, K, 8, 8) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    config = DiffusionTransformerConfig.ablation(ablation, width=32)
    assert (config.spatial_position, config.local_attention) == (
        ablation in ("sp", "rsvq"),
        ablation in ("lma", "rsvq"),
    )


def test_gradient_reaches_every_parameter():
    model = tiny(dropout=0.1).train()
    ids, t, text, _ = inputs(batch=4)
    text, mask = model.drop_text(text, None, drop_prob=0.5, generator=torch.Generator().manual_seed(1))
    # samples 1 and 2 get the null context (null_text gets a gradient), 0 and 3 keep their text
    assert mask.all(dim=1).tolist() == [True, False, False, True]
    model(ids, t, text, mask).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def _changed_positions(model: DiffusionTransformer, row: int, col: int) -> torch.Tensor:
    ids, t, text, mask = inputs(batch=1)
    other = ids.clone()
    other[0, row, col] = (ids[0, row, col] + 1) % K
    with torch.no_grad():
        diff = (model(ids, t, text, mask) - model(other, t, text, mask)).abs().amax(dim=1)[0]
    return diff > 1e-6  # (h, w)


def test_local_attention_keeps_a_change_inside_its_window():
    changed = _changed_positions(tiny(depth=1, local_attention=True, shift_windows=False), 1, 6)
    window = torch.zeros(8, 8, dtype=torch.bool)
    window[0:4, 4:8] = True
    assert torch.equal(changed, window)
    # full attention: one token reaches every position in one block
    assert _changed_positions(tiny(depth=1, local_attention=False), 1, 6).all()


def test_shifted_windows_grow_the_receptive_field_but_not_across_the_border():
    unshifted = _changed_positions(tiny(depth=2, local_attention=True, shift_windows=False), 3, 3)
    assert unshifted.sum() == 16  # two blocks, same windows: still the 4 x 4 window
    shifted = _changed_positions(tiny(depth=2, local_attention=True, shift_windows=True), 3, 3)
    # block 1: window [0:4]²; block 2 (shifted by 2): the windows [2:6]² and their neighbours
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[0:6, 0:6] = True
    assert torch.equal(shifted, expected)
    # a token at the top-left corner: the rolled windows hold it with the bottom/right border
    # tokens, but the Swin mask keeps them apart (no wrap-around)
    corner = _changed_positions(tiny(depth=2, local_attention=True, shift_windows=True), 0, 0)
    assert torch.equal(corner, expected)


def test_spatial_position_changes_outputs_with_the_same_weights():
    base, sp = tiny(spatial_position=False), tiny(spatial_position=True)
    sp.load_state_dict(base.state_dict())  # SP adds no parameters
    with torch.no_grad():
        assert not torch.allclose(base(*inputs()), sp(*inputs()), atol=1e-5)


def test_rope_2d_scores_depend_only_on_the_relative_offset():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    qr, qc = torch.tensor([0, 3, 7, 2, 5]), torch.tensor([1, 0, 4, 6, 2])
    kr, kc = torch.tensor([2, 2, 0, 5, 1]), torch.tensor([3, 7, 1, 0, 4])

    def scores(dr: int, dc: int) -> torch.Tensor:
        return rope_2d(q, qr + dr, qc + dc) @ rope_2d(k, kr + dr, kc + dc).T

    assert torch.allclose(scores(0, 0), scores(5, -3), atol=1e-5)
    assert torch.allclose(scores(0, 0), scores(-2, 11), atol=1e-5)
    # ... and on it: moving only the keys changes the scores, rows and columns separately
    moved_rows = rope_2d(q, qr, qc) @ rope_2d(k, kr + 1, kc).T
    moved_cols = rope_2d(q, qr, qc) @ rope_2d(k, kr, kc + 1).T
    assert not torch.allclose(scores(0, 0), moved_rows, atol=1e-3)
    assert not torch.allclose(scores(0, 0), moved_cols, atol=1e-3)
    # a rotation: norms are kept
    assert torch.allclose(rope_2d(q, qr, qc).norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    with pytest.raises(ValueError):
        rope_2d(torch.randn(2, 6), torch.arange(2), torch.arange(2))


def test_padding_tokens_do_not_change_the_output():
    model = tiny()
    ids, t, text, mask = inputs()
    noisy = text.clone()
    noisy[0, 3:] = torch.randn(2, TEXT_DIM) * 100
    with torch.no_grad():
        assert torch.allclose(model(ids, t, text, mask), model(ids, t, noisy, mask), atol=1e-5)
        # ... but real tokens do, and without a mask the padding counts
        assert not torch.allclose(model(ids, t, text, None), model(ids, t, noisy, None), atol=1e-3)
        # a shorter context equals the padded one
        short = model(ids[:1], t[:1], text[:1, :3], None)
        assert torch.allclose(short, model(ids, t, text, mask)[:1], atol=1e-5)


def test_null_context_and_condition_dropout():
    model = tiny()
    ids, t, text, mask = inputs(batch=4)
    null, null_mask = model.null_text_states(4)
    assert null.shape == (4, 1, TEXT_DIM) and null_mask.all()
    with torch.no_grad():
        unconditional = model(ids, t, null, null_mask)
        assert not torch.allclose(unconditional, model(ids, t, text, mask), atol=1e-3)
        padded, padded_mask = model.null_text_states(4, length=5)
        assert torch.allclose(model(ids, t, padded, padded_mask), unconditional, atol=1e-5)

        kept, kept_mask = model.drop_text(text, mask, 0.0)
        assert torch.equal(kept, text) and torch.equal(kept_mask, mask)
        dropped, dropped_mask = model.drop_text(text, mask, 1.0)
        assert torch.allclose(model(ids, t, dropped, dropped_mask), unconditional, atol=1e-5)
        some, some_mask = model.drop_text(text, None, 0.5, torch.Generator().manual_seed(0))
        draw = torch.rand(4, generator=torch.Generator().manual_seed(0)) < 0.5
        assert 0 < draw.sum() < 4  # the seed drops some but not all
        assert torch.equal(some_mask.all(dim=1), ~draw)
        out = model(ids, t, some, some_mask)
        assert torch.allclose(out[draw], unconditional[draw], atol=1e-5)
        assert torch.allclose(out[~draw], model(ids, t, text, None)[~draw], atol=1e-5)
    with pytest.raises(ValueError):
        model.drop_text(text, mask, 1.5)


def test_folder_round_trip_gives_identical_logits(tmp_path: Path):
    model = tiny(**ABLATIONS["rsvq"])
    folder = model.save_pretrained(tmp_path / "transformer", dtype=torch.float32)
    loaded = DiffusionTransformer.from_pretrained(folder)
    assert loaded.config == model.config and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(*inputs()), model(*inputs()))
    tokenizer = build_model({"name": "vq_tokenizer", "channels": [4, 8], "codebook_size": 8, "code_dim": 4})
    other = tokenizer.save_pretrained(tmp_path / "tokenizer")
    with pytest.raises(RsgenError, match="not a rsvq_transformer model"):
        DiffusionTransformer.from_pretrained(other)


@pytest.mark.parametrize(
    "bad",
    [
        {"heads": 3},  # does not divide width 16
        {"width": 24, "heads": 4},  # head dim 6: not divisible by 4 for 2-D RoPE
        {"window": 3},  # does not divide the 8 x 8 grid
        {"grid": [8]},
        {"num_classes": 1},
        {"dropout": 1.0},
        {"depth": 0},
        {"spatial_pos": True},  # unknown key
    ],
)
def test_bad_configs_are_refused(bad: dict):
    with pytest.raises((ValueError, RsgenError)):
        build_model({**TINY, **bad})
    if "spatial_pos" not in bad:
        with pytest.raises(ValueError):
            DiffusionTransformerConfig(**{k: v for k, v in {**TINY, **bad}.items() if k != "name"})


def test_configs_that_only_fail_with_a_switch_on():
    DiffusionTransformerConfig(width=24, heads=4, spatial_position=False, local_attention=False)
    DiffusionTransformerConfig(grid=[8, 8], window=3, local_attention=False, spatial_position=False)
    with pytest.raises(ValueError):
        DiffusionTransformerConfig.ablation("swin")


def test_bad_inputs_are_refused():
    model = tiny()
    ids, t, text, mask = inputs()
    cases = [
        (ids[:, :4], t, text, mask),  # wrong grid
        (ids + K, t, text, mask),  # ids beyond [MASK]
        (ids.float(), t, text, mask),
        (ids, t + 10, text, mask),  # t >= num_timesteps
        (ids, t[:1], text, mask),
        (ids, t, text[..., :4], mask),
        (ids, t, torch.randn(2, 7, TEXT_DIM), None),  # longer than max_text_tokens
        (ids, t, text, torch.zeros_like(mask)),  # no real token
    ]
    for case in cases:
        with pytest.raises(ValueError):
            model(*case)
