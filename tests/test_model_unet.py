"""The U-Net family: the paper's numbers, and every config builds and runs."""

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.model import UNet, UNetConfig, parameter_count
from tests.conftest import model_config


def test_paper_net_has_the_papers_parameter_count_and_sizes():
    model = UNet(model_config("unet-paper")).eval()
    assert parameter_count(model) == 31_030_658
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)
    assert model.geometry.raw_output_size(572) == 388


def test_every_config_builds_and_maps_a_legal_input_to_its_predicted_output(config_name):
    config = model_config(config_name, base=4)
    model = UNet(config).eval()
    n = model.geometry.min_tile
    with torch.inference_mode():
        out = model.activate(model(torch.rand(2, config.in_channels, n, n)))
    expected = model.geometry.raw_output_size(n)
    assert out.shape == (2, config.classes, expected, expected)


@pytest.mark.parametrize(("head", "low", "high"), [("softmax", 0.0, 1.0), ("sigmoid", 0.0, 1.0), ("tanh", -1.0, 1.0)])
def test_heads_map_logits_into_their_range(head, low, high):
    classes = 2 if head == "softmax" else 1
    model = UNet(UNetConfig(depth=1, base=2, padding="same", head=head, classes=classes)).eval()
    with torch.inference_mode():
        y = model.activate(torch.randn(1, classes, 5, 5) * 10)
    assert low <= float(y.min()) and float(y.max()) <= high
    if head == "softmax":
        torch.testing.assert_close(y.sum(dim=1), torch.ones(1, 5, 5))


def test_the_bn8_variant_is_built_layer_for_layer_as_designed():
    model = UNet(model_config("unet-bn8"))
    up = model.ups[0].up
    assert [type(m).__name__ for m in up] == ["ConvTranspose2d", "BatchNorm2d", "ReLU"]
    assert model.head.kernel_size == (3, 3) and model.head.out_channels == 1
    assert model.config.channels(model.config.depth) == 128


def test_the_strided_variant_downsamples_with_a_stride_2_conv():
    model = UNet(model_config("unet-strided"))
    down = model.downs[0][0]
    assert [type(m).__name__ for m in down] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert down[0].stride == (2, 2) and down[0].kernel_size == (3, 3)
    up = model.ups[0].up[0]
    assert up.kernel_size == (3, 3) and up.output_padding == (1, 1)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"padding": "valid", "down": "conv"}, "padding: same"),
        ({"head": "softmax", "classes": 1}, "classes >= 2"),
        ({"base": 0}, "base"),
        ({"padding": "wide"}, "padding"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_configs_are_rejected_with_the_field_named(fields, named):
    with pytest.raises(ConfigError, match=named):
        UNetConfig.from_yaml_text("\n".join(f"{k}: {v}" for k, v in fields.items()), "model.yaml")
