"""BNN-PYNQ's CNV (W1A1) for any binarization method.

x in [0,1] -> 2x-1 -> 8-bit quant -> 6 unpadded 3x3 binary convs (64, 64, pool, 128, 128, pool,
256, 256), each followed by BN and the binary act -> FC 512 -> FC 512 -> FC classes -> TensorNorm.
Needs 32x32 inputs (32 -> 30 -> 28 -> 14 -> 12 -> 10 -> 5 -> 3 -> 1).
"""

from __future__ import annotations

from torch import Tensor, nn

from models.binarize.base import BinarizationMethod
from models.layers import ScaleToBipolarRange, TensorNorm, int8_input

#: (output channels, max-pool after) of each convolution
CNV_CONVS = ((64, False), (64, True), (128, False), (128, True), (256, False), (256, False))
#: (in, out) of the hidden fully connected layers
CNV_FCS = ((256, 512), (512, 512))


class CNV(nn.Module):
    """Convolutional W1A1 net with an 8-bit input layer."""

    def __init__(self, method: BinarizationMethod, in_channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [ScaleToBipolarRange(), int8_input()]
        prev = in_channels
        for out_ch, pool in CNV_CONVS:
            layers += [method.conv(prev, out_ch, 3), nn.BatchNorm2d(out_ch, eps=1e-4),
                       method.act(out_ch)]
            if pool:
                layers.append(nn.MaxPool2d(2))
            prev = out_ch
        self.conv_features = nn.Sequential(*layers)
        fcs: list[nn.Module] = []
        for fin, fout in CNV_FCS:
            fcs += [method.linear(fin, fout), nn.BatchNorm1d(fout, eps=1e-4), method.act(fout)]
        fcs += [method.linear(CNV_FCS[-1][1], num_classes), TensorNorm()]
        self.linear_features = nn.Sequential(*fcs)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_features(x)
        return self.linear_features(x.flatten(1))
