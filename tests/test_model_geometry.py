"""Geometry derived from configs, checked against the nets themselves."""

import pytest
import torch

from pipeline.model import UNet, net_geometry
from pipeline.model.geometry import input_interval, raw_output_size, skip_crops
from tests.conftest import model_config, random_model


def test_paper_geometry_matches_the_paper():
    g = net_geometry(model_config("unet-paper"))
    assert (g.factor, g.margin, g.shrink, g.first_input) == (16, 92, 184, 188)
    assert g.is_valid_input(572) and not g.is_valid_input(570)


def test_legal_input_sizes_are_exactly_the_ones_the_net_accepts(config_name):
    config = model_config(config_name, base=2, depth=3)
    g = net_geometry(config)
    model = UNet(config).eval()
    for n in range(1, g.first_input + 3 * g.factor):
        legal = g.is_valid_input(n)
        assert legal == (raw_output_size(config, n) is not None), n
        if legal and n < g.first_input + 2 * g.factor:
            with torch.inference_mode():
                assert model(torch.zeros(1, config.in_channels, n, n)).shape[-1] == g.raw_output_size(n)


def _measured_interval(model: UNet, size: int, j: int) -> tuple[int, int]:
    """Columns of the input that output column j depends on, by a gradient probe."""
    x = torch.rand(1, model.config.in_channels, size, size, dtype=torch.float64, requires_grad=True)
    out = model(x)
    out[0, :, out.shape[-2] // 2 - 2 : out.shape[-2] // 2 + 2, j].sum().backward()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
    return int(cols.min()), int(cols.max())


def _leaky(model: UNet) -> UNet:
    """Same structure, but no unit is ever dead: a probe of structure, not of weights."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(parent, name, torch.nn.LeakyReLU(0.1))
    return model


def test_radius_equals_a_gradient_probe_of_the_net(config_name):
    config = model_config(config_name, base=4)
    model = _leaky(random_model(config)).double()
    g = model.geometry
    size = g.valid_input_at_least(2 * g.radius + 6 * g.factor)
    probed_radius = 0
    for j in range(2 * g.factor, 3 * g.factor):
        lo, hi = _measured_interval(model, size, j)
        centre = j + g.output_offset
        computed = input_interval(config, j, j, skip_crops(config, g.first_input))
        assert computed[0] <= lo and hi <= computed[1], (j, (lo, hi), computed)
        probed_radius = max(probed_radius, centre - lo, hi - centre)
    assert probed_radius == g.radius
    assert g.margin >= (g.radius if g.shrink == 0 else g.shrink // 2)


@pytest.mark.parametrize("name", ["unet-paper", "unet-bn", "unet-strided"])
def test_step_is_a_multiple_of_the_factor_and_covers_no_inexact_pixel(name):
    g = net_geometry(model_config(name))
    for n in range(g.min_tile, g.min_tile + 10 * g.factor, g.factor):
        assert g.step(n) % g.factor == 0
        assert g.factor <= g.step(n) <= g.exact_output_size(n)
