"""Layers shared by the nets: TensorNorm, the 8-bit input quantizer, and the input scaling.

Binary layers themselves come from the binarization method (``method.linear``, ``method.conv``,
``method.act``) so that each method controls its own weight and activation quantization.
"""

from __future__ import annotations

import torch
from brevitas.core.bit_width import BitWidthImplType
from brevitas.core.quant import QuantType
from brevitas.core.restrict_val import FloatToIntImplType, RestrictValueType
from brevitas.core.scaling import ScalingImplType
from brevitas.core.zero_point import ZeroZeroPoint
from brevitas.nn import QuantIdentity
from brevitas.quant.solver import ActQuantSolver
from torch import Tensor, nn


class SignedInt8InputQuant(ActQuantSolver):
    """8-bit signed input quantizer of BNN-PYNQ's CNV: range [-1, 1 - 2^-7], scale 2^-7.

    q = clamp(round(x * 2^7), -128, 127) * 2^-7
    """

    quant_type = QuantType.INT
    bit_width_impl_type = BitWidthImplType.CONST
    bit_width = 8
    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
    zero_point_impl = ZeroZeroPoint
    float_to_int_impl_type = FloatToIntImplType.ROUND
    scaling_per_output_channel = False
    narrow_range = False
    signed = True
    min_val = -1.0
    max_val = 1.0 - 2.0 ** -7


def int8_input() -> nn.Module:
    """The 8-bit input quantizer as a module."""
    return QuantIdentity(act_quant=SignedInt8InputQuant, return_quant_tensor=False)


class ScaleToBipolarRange(nn.Module):
    """x in [0, 1] -> 2x - 1 in [-1, 1] (the exported model's input contract is [0, 1])."""

    def forward(self, x: Tensor) -> Tensor:
        return 2.0 * x - 1.0


class TensorNorm(nn.Module):
    """Per-tensor batch normalization with one learnable affine pair, as in BNN-PYNQ.

    train: y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias, updating running statistics
    eval:  y = (x - running_mean) / sqrt(running_var + eps) * weight + bias
    """

    def __init__(self, eps: float = 1e-4, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_var", torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            mean = x.mean()
            unbiased_var = x.var(unbiased=True)
            biased_var = x.var(unbiased=False)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased_var.detach())
            inv_std = 1.0 / torch.sqrt(biased_var + self.eps)
            return (x - mean) * inv_std * self.weight + self.bias
        return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps) * self.weight \
            + self.bias
