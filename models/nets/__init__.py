"""The BNN-PYNQ topologies and a residual binary net, built for any registered binarization method.

``build_net(config)`` rebuilds a net from the ``config`` dict stored in checkpoints:
``{"net", "method", "method_options", "in_shape", "num_classes"}``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from models.binarize import get_method
from models.nets.cnv import CNV
from models.nets.mlp import MLP_HIDDEN, MLP
from models.nets.resnet import ResNet

NETS = ("tfc", "sfc", "lfc", "cnv", "resnet")


def required_input_side(net: str, native_side: int) -> int:
    """Image side the net needs: CNV's unpadded 3x3 convolutions need 32x32 (28x28 is padded)."""
    return 32 if net == "cnv" else native_side


def build_net(config: dict[str, Any]) -> nn.Module:
    """Build the net described by ``config`` (see module docstring)."""
    net = config["net"]
    method = get_method(config["method"], **config.get("method_options", {}))
    in_shape = tuple(config["in_shape"])
    num_classes = int(config["num_classes"])
    if net in MLP_HIDDEN:
        return MLP(method, MLP_HIDDEN[net], in_shape, num_classes)
    if net == "cnv":
        if in_shape[1:] != (32, 32):
            raise ValueError(f"CNV needs 32x32 inputs (got {in_shape}); pad 28x28 images to 32")
        return CNV(method, in_shape[0], num_classes)
    if net == "resnet":
        return ResNet(method, in_shape, num_classes)
    raise ValueError(f"unknown net {net!r}; choose from {', '.join(NETS)}")


__all__ = ["CNV", "MLP", "NETS", "ResNet", "build_net", "required_input_side"]
