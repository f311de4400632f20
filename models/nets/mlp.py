"""BNN-PYNQ's multi-layer perceptrons TFC, SFC and LFC (W1A1), for any binarization method.

x in [0,1] -> 2x-1 -> binary act -> dropout -> [binary FC -> BN -> binary act -> dropout] x 3
-> binary FC -> TensorNorm -> logits
"""

from __future__ import annotations

from torch import Tensor, nn

from models.binarize.base import BinarizationMethod
from models.layers import ScaleToBipolarRange, TensorNorm

#: hidden layer widths of each MLP
MLP_HIDDEN = {"tfc": (64, 64, 64), "sfc": (256, 256, 256), "lfc": (1024, 1024, 1024)}


class MLP(nn.Module):
    """Fully connected W1A1 net; ``in_shape`` (C, H, W) is flattened."""

    def __init__(self, method: BinarizationMethod, hidden: tuple[int, ...],
                 in_shape: tuple[int, ...], num_classes: int, in_dropout: float = 0.2,
                 hidden_dropout: float = 0.2) -> None:
        super().__init__()
        in_features = 1
        for d in in_shape:
            in_features *= int(d)
        layers: list[nn.Module] = [ScaleToBipolarRange(), nn.Flatten(),
                                   method.act(in_features), nn.Dropout(in_dropout)]
        prev = in_features
        for width in hidden:
            layers += [method.linear(prev, width), nn.BatchNorm1d(width, eps=1e-4),
                       method.act(width), nn.Dropout(hidden_dropout)]
            prev = width
        layers += [method.linear(prev, num_classes), TensorNorm()]
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
