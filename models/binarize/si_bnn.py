"""Si-BNN, sparsity-inducing binary neural network (Wang et al., "Sparsity-Inducing Binarized
Neural Networks", IEEE TNNLS 2022; official code).

Activations in {0, 1}, per channel c with theta_c (init 0) and s_c (init 1), neither decayed:

    forward:   y = (x - theta_c) * s_c,    a = 1{y >= 0}
    backward:  da/dy = 1{-rho < y < 1}     (rho option, default 0.3)

so dL/dx = g * 1{-rho < y < 1} * s_c, dL/dtheta_c = -sum g * 1{..} * s_c and
dL/ds_c = sum g * 1{..} * (x - theta_c): s only shapes the backward window.

Weights: XNOR-Net style, W_b = alpha_c * sign(W), alpha_c = mean|W_c|, latent W clipped to [-1, 1].

Export: every 1-bit Brevitas quantizer exports as ``BipolarQuant``, so a = 0.5 * (b + 1) with
b = sign(y) is built explicitly, and QONNX execution equals PyTorch.

Deployment: with b = 2a - 1, sum_j W_b[c,j] a_j = alpha_c / 2 * (dot(W, b) + sum_j sign(W[c,j]))
= alpha_c * (popcount(XNOR(b, w)) - N-_c), N-_c the number of -1 weights of filter c: a standard
XNOR-popcount unit whose constant offset folds into the thresholds. Padding a with 0 equals padding
b with -1 (bit 0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.binarize.base import BinarizationMethod, Surrogate
from models.binarize.bnn import SignedBinaryActHardTanhSte
from models.binarize.xnor import SignedBinaryWeightPerChannelAbsMean


class WindowSTE(Surrogate):
    """Forward b = sign(y); backward db/dy = 2 * 1{-rho < y < 1}, so that a = (b + 1) / 2 has
    da/dy = 1{-rho < y < 1}."""

    def __init__(self, rho: float = 0.3) -> None:
        super().__init__()
        self.rho = float(rho)

    def derivative(self, x: Tensor) -> Tensor:
        return 2.0 * ((x > -self.rho) & (x < 1.0)).to(x.dtype)


class SignedBinaryActWindow(SignedBinaryActHardTanhSte):
    """b = sign(y) (scale 1) with the Si-BNN window backward."""

    surrogate_impl = WindowSTE
    rho = 0.3


class SparseBinaryAct(nn.Module):
    """a = 1{(x - theta_c) * s_c >= 0} in {0, 1}, exported as 0.5 * (BipolarQuant(y) + 1)."""

    def __init__(self, channels: int, rho: float) -> None:
        super().__init__()
        from brevitas.nn import QuantIdentity

        self.theta = nn.Parameter(torch.zeros(channels))
        self.s = nn.Parameter(torch.ones(channels))
        self.quant = QuantIdentity(act_quant=SignedBinaryActWindow, rho=float(rho),
                                   return_quant_tensor=False)

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1, *([1] * (x.dim() - 2)))
        y = (x - self.theta.reshape(shape)) * self.s.reshape(shape)
        return 0.5 * (self.quant(y) + 1.0)


class SiBnn(BinarizationMethod):
    """{0,1} activations with learned per-channel threshold and window (key ``si_bnn``)."""

    key = "si_bnn"
    title = "Si-BNN: sparsity-inducing {0,1} activations, XNOR-Net weights"
    paper = "Wang et al., Sparsity-Inducing Binarized Neural Networks, IEEE TNNLS 2022"
    weight_quant = SignedBinaryWeightPerChannelAbsMean
    act_quant = SignedBinaryActWindow
    #: rho: lower edge of the backward window (-rho, 1)
    defaults: dict[str, Any] = {"rho": 0.3}
    #: a = 0 is bit 0
    pad_value = 0.0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not float(self.options["rho"]) > 0:
            raise ValueError(f"si_bnn option rho={self.options['rho']!r} must be > 0")

    def act(self, channels: int) -> nn.Module:
        return SparseBinaryAct(channels, float(self.options["rho"]))

    def no_weight_decay(self, name: str, param: nn.Parameter) -> bool:
        """theta and s are excluded from weight decay."""
        return name.endswith(".theta") or name.endswith(".s")

    def deployment(self) -> tuple[bool, str]:
        return True, ("XNOR-popcount on b = 2a - 1 with the -1 weight count N-_c folded into the "
                      "integer thresholds")
