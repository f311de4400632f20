"""A ResNet-style binary net with a shortcut around every binary convolution (Bi-Real style), for
the methods whose papers use residual topologies (SD-BNN, Si-BNN, BBG's gated residual).

Stream: x in [0,1] -> 2x-1 -> 8-bit quant -> 8-bit-weight 3x3 conv -> BN -> 8-bit stream, then per
binary unit (``RESNET_STAGES``: width and units per stage, the first unit of a later stage has
stride 2):

    y = Q8( BN(BinConv3x3(pad(act(x), bit 0))) + shortcut(down(x)) )

``act`` is the method's binary activation, padding uses the value that bit 0 encodes (-1 for
bipolar, 0 for {0,1} activations) so that hardware and software pad alike, ``down`` is identity or
AvgPool(2) -> 8-bit 1x1 conv -> BN when the shape changes, ``shortcut`` is the method's (identity,
or BBG's per-channel gate g), Q8 an 8-bit signed quantizer with a learned scale (the integer
shortcut stream). Head: global average pool -> Q8 -> 8-bit FC -> TensorNorm. The full-precision
layers of the papers (first conv, 1x1 downsample, last FC) are 8-bit so the whole net deploys.
"""

from __future__ import annotations

from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat
from torch import Tensor, nn

from models.binarize.base import BinarizationMethod
from models.layers import ScaleToBipolarRange, TensorNorm, int8_input

#: (width, binary conv units) per stage; stages after the first start with stride 2
RESNET_STAGES = ((16, 2), (32, 2), (64, 2))


def stream_quant() -> nn.Module:
    """The 8-bit signed quantizer of the shortcut stream (learned per-tensor scale)."""
    return QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=False)


class BinaryResUnit(nn.Module):
    """y = Q8(BN(BinConv(pad(act(x)))) + shortcut(down(x)))."""

    def __init__(self, method: BinarizationMethod, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.act = method.act(cin)
        self.pad = nn.ConstantPad2d(1, method.pad_value)
        self.conv = method.conv(cin, cout, 3, stride=stride)
        self.bn = nn.BatchNorm2d(cout, eps=1e-4)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                QuantConv2d(cin, cout, 1, bias=False, weight_quant=Int8WeightPerTensorFloat),
                nn.BatchNorm2d(cout, eps=1e-4))
        self.shortcut = method.shortcut(cout)
        self.out_quant = stream_quant()

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(self.conv(self.pad(self.act(x))))
        return self.out_quant(y + self.shortcut(self.down(x)))


class ResNet(nn.Module):
    """Residual binary net; input side must be divisible by 2^(stages - 1)."""

    def __init__(self, method: BinarizationMethod, in_shape: tuple[int, ...], num_classes: int,
                 stages: tuple[tuple[int, int], ...] = RESNET_STAGES) -> None:
        super().__init__()
        c, h, w = (int(d) for d in in_shape)
        factor = 2 ** (len(stages) - 1)
        if h % factor or w % factor:
            raise ValueError(f"resnet needs an input side divisible by {factor} (got {h}x{w})")
        width0 = stages[0][0]
        self.stem = nn.Sequential(
            ScaleToBipolarRange(), int8_input(),
            QuantConv2d(c, width0, 3, padding=1, bias=False, weight_quant=Int8WeightPerTensorFloat),
            nn.BatchNorm2d(width0, eps=1e-4), stream_quant())
        units: list[nn.Module] = []
        prev = width0
        for i, (width, count) in enumerate(stages):
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                units.append(BinaryResUnit(method, prev, width, stride))
                prev = width
        self.units = nn.Sequential(*units)
        self.head = nn.Sequential(
            nn.AvgPool2d((h // factor, w // factor)), stream_quant(), nn.Flatten(),
            QuantLinear(prev, num_classes, bias=False, weight_quant=Int8WeightPerTensorFloat),
            TensorNorm())

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.units(self.stem(x)))
