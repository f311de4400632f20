"""The BNN-PYNQ topologies and the residual net for every method: shapes, layer counts, input handling."""

from __future__ import annotations

import pytest
import torch

from models.binarize import METHODS
from models.nets import NETS, build_net, required_input_side
from models.binarize import binary_weight_layers

#: net -> number of binary-weight layers
BINARY_LAYERS = {"tfc": 4, "sfc": 4, "lfc": 4, "cnv": 9, "resnet": 6}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("channels,side", [(1, 28), (3, 32)])
def test_forward_shapes(net: str, method: str, channels: int, side: int) -> None:
    side = required_input_side(net, side)
    model = build_net({"net": net, "method": method, "in_shape": (channels, side, side),
                       "num_classes": 7})
    assert len(binary_weight_layers(model)) == BINARY_LAYERS[net]
    x = torch.rand(3, channels, side, side)
    model.train()
    model(x).sum().backward()
    model.eval()
    assert model(x).shape == (3, 7)


def test_cnv_rejects_28x28() -> None:
    with pytest.raises(ValueError, match="32x32"):
        build_net({"net": "cnv", "method": "bnn", "in_shape": (1, 28, 28), "num_classes": 10})


def test_cnv_first_layer_is_8_bit_input() -> None:
    model = build_net({"net": "cnv", "method": "bnn", "in_shape": (1, 32, 32), "num_classes": 10})
    quant = model.conv_features[1]
    x = torch.tensor([[-1.0, -0.5, 0.0, 0.25, 1.0]])
    # 2^-7 steps, range [-1, 1 - 2^-7]
    torch.testing.assert_close(quant(x), torch.tensor([[-1.0, -0.5, 0.0, 0.25, 1 - 2 ** -7]]))


def test_unknown_net() -> None:
    with pytest.raises(ValueError, match="unknown net"):
        build_net({"net": "resnet99", "method": "bnn", "in_shape": (1, 28, 28),
                   "num_classes": 10})
