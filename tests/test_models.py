import pytest
import torch

from rsgen.config import load_config
from rsgen.models import DEGANConfig, DEGANDiscriminator, DEGANGenerator, DiscriminatorConfig, build_model
from rsgen.models.blocks import ChannelAttention, SpatialAttention
from rsgen.models.profile import count_macs, count_parameters
from tests.conftest import TINY_MODEL


@pytest.mark.parametrize(("scale", "paper_params"), [(2, 6.99e6), (4, 7.58e6)])
def test_paper_config_matches_paper_parameter_count(scale, paper_params):
    config = load_config("degan-paper")["model"]
    generator = DEGANGenerator(DEGANConfig.from_dict({**config, "scale": scale}))
    assert abs(count_parameters(generator) - paper_params) / paper_params < 0.10


def test_paper_architecture_widths():
    g = DEGANGenerator(DEGANConfig(scale=4))
    convs = [m for m in g.stem if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 16), (16, 32), (32, 64), (64, 128)]
    tail = [m for m in g.tail if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in tail] == [(128, 64), (64, 32), (32, 16), (16, 3)]
    unet = g.diffusion
    assert (unet.enc1.stride, unet.enc2.stride, unet.enc3.stride) == ((1, 1), (2, 2), (2, 2))
    assert unet.transformer.self_attn.num_heads == 4
    assert unet.transformer.linear1.out_features == 1024
    assert unet.time_mlp[0].out_features == 256 and unet.time_mlp[2].out_features == 256
    assert len(g.upsample) == 2
    cam, sam = g.attention
    assert isinstance(cam, ChannelAttention) and isinstance(sam, SpatialAttention)
    assert cam.mlp[0].out_channels == 128 // 16 and sam.conv.kernel_size == (7, 7)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("size", [(12, 12), (9, 13)])
def test_generator_output_shape_and_range(scale, size):
    for skip in ("none", "bicubic"):
        g = DEGANGenerator(DEGANConfig.from_dict({**TINY_MODEL, "scale": scale, "global_skip": skip})).eval()
        with torch.no_grad():
            y = g(torch.rand(2, 3, *size) * 2 - 1)
        assert y.shape == (2, 3, size[0] * scale, size[1] * scale)
        assert y.min() >= -1 and y.max() <= 1


def test_time_step_conditions_the_diffusion_module():
    torch.manual_seed(0)
    g = DEGANGenerator(DEGANConfig.from_dict({**TINY_MODEL, "scale": 2})).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(g(x, torch.zeros(1)), g(x, torch.ones(1)))
        assert torch.equal(g(x), g(x, torch.zeros(1)))  # inference default t = 0


def test_ablation_switches_change_the_network():
    def build(**switches):
        return DEGANGenerator(DEGANConfig.from_dict({**TINY_MODEL, **switches}))

    baseline = build(attention="none", diffusion_module=False)
    assert baseline.diffusion is None and isinstance(baseline.attention, torch.nn.Identity)
    se = build(attention="se")
    assert isinstance(se.attention, ChannelAttention) and not se.attention.use_max
    assert build(attention="sam").attention.__class__ is SpatialAttention
    assert build(unet_transformer=False).diffusion.transformer is None
    assert count_parameters(build(unet_transformer=False)) < count_parameters(build())


def test_ablation_configs_load():
    for name in ("baseline", "se", "cam", "sam", "cbam", "unet-no-transformer"):
        config = load_config(f"ablations/degan-cpu-{name}")
        assert DEGANGenerator(DEGANConfig.from_dict(config["model"]))


def test_discriminator_shape_and_structure():
    d = DEGANDiscriminator(DiscriminatorConfig(base_channels=8, num_blocks=4, fc_size=16))
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2]
    assert d(torch.rand(3, 3, 40, 40)).shape == (3,)
    assert d(torch.rand(2, 3, 24, 24)).shape == (2,)  # adaptive 6x6 pooling: any size


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="bogus"):
        DEGANConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="scale"):
        DEGANConfig(scale=3)


def test_build_model_and_macs():
    g = build_model({"name": "degan_generator", **TINY_MODEL, "scale": 2})
    assert count_macs(g, torch.zeros(1, 3, 8, 8)) > 0


def test_bottleneck_transformer_matches_the_stock_layer():
    from rsgen.models.degan_refiner import BottleneckTransformer

    torch.manual_seed(0)
    stock = torch.nn.TransformerEncoderLayer(16, 4, 32, 0.1, batch_first=True).eval()
    ours = BottleneckTransformer(16, 4, 32, 0.1, batch_first=True).eval()
    ours.load_state_dict(stock.state_dict())
    x = torch.randn(2, 50, 16)
    with torch.inference_mode():
        assert torch.allclose(stock(x), ours(x), atol=1e-5)
    ours.train()
    ours(x).sum().backward()
    assert ours.self_attn.in_proj_weight.grad.abs().sum() > 0


def _largest_allocation(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the largest single CPU allocation of any op in one inference forward."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x)
    return max(event.cpu_memory_usage for event in prof.events())


def test_generator_attention_memory_stays_linear_in_tokens():
    """The refiner's bottleneck runs through SDPA: a 256 px HR tile (4096 tokens) never holds
    the (heads x tokens x tokens) score matrix the stock layer's fast path builds (128 MiB here)."""
    from rsgen.models.degan_refiner import BottleneckTransformer

    g = build_model({"name": "degan_generator", **TINY_MODEL, "scale": 2}).eval()
    assert isinstance(g.diffusion.transformer, BottleneckTransformer)
    assert not any(type(m) is torch.nn.TransformerEncoderLayer for m in g.modules())
    x = torch.zeros(1, 3, 128, 128)
    assert _largest_allocation(g, x) < 32 * 2**20
    stock = torch.nn.TransformerEncoderLayer(16, 2, 16, 0.1, batch_first=True).eval()
    tokens = torch.zeros(1, 64 * 64, 16)
    assert _largest_allocation(stock, tokens) >= 2 * 4096 * 4096 * 4  # the check can fail


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("channels", -8, "channels must be integers"),
        ("stem_channels", [4, 0], "stem_channels must be integers"),
        ("channels", 10**6, "channels must be integers in 1..4096"),
        ("transformer_heads", 3, "must divide the refiner width"),
        ("attention", "cbma", "attention must be one of"),
        ("num_res_blocks", -1, "num_res_blocks"),
    ],
)
def test_bad_generator_configs_fail_before_building(option, value, message):
    with pytest.raises(ValueError, match=message):
        DEGANConfig.from_dict({**TINY_MODEL, option: value})


def test_mac_counter_counts_fused_attention_on_cpu():
    """scaled_dot_product_attention on CPU dispatches to a kernel PyTorch's counter does not know:
    it must count as the two matrix products it is (QK^T and AV), not as zero."""

    class Attention(torch.nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    batch, heads, tokens, dim = 2, 4, 64, 16
    expected = 2 * batch * heads * tokens * tokens * dim  # two products of tokens x tokens x dim MACs
    assert count_macs(Attention(), torch.randn(batch, heads, tokens, dim)) == expected
