"""SD-BNN, Self-Distribution Binary Neural Network (Xue et al., "Self-Distribution Binary Neural
Networks", Applied Intelligence 2022; official code).

Weight Self Distribution (WSD), per output channel c with a learnable a_c (init 0):

    w~[c] = w[c] + sigmoid(a_c) * 0.01 * mean_j(w[c, j])      (mean over C_in*k*k, detached)
    W_b   = sign(w~)                                            (no scaling factor)

Activation Self Distribution (ASD) before each binary activation, option ``asd``:

    'static':   a~ = a + sigmoid(beta_c)                        beta in R^C, init 0
    'dynamic':  a~ = a + sigmoid(W2 relu(W1 GAP(a)))            squeeze-excitation, reduction 16,
                                                                no biases (the authors' code)
    a_b = sign(a~)

forward:   W_b = sign(w~),  a_b = sign(a~)
backward:  d sign(u) / du ~= k * t * (1 - tanh^2(t * u)),   k = max(1 / t, 1)

for weights (u = w~) and activations (u = a~): the IR-Net estimator,
with t rising log-linearly from ``t_start`` = 1e-3 to ``t_end`` = 10 over the epochs
(t_e = t_start * (t_end / t_start)^(e / (E - 1)) at epoch e of E). Gradients reach a_c through
sigmoid and beta / W1 / W2 by autograd.

Deployment: WSD costs nothing once sign(w~) is baked into the exported weights
(:meth:`BinarizationMethod.prepare_export`). Static ASD is a per-channel constant before the sign:
it folds into the thresholds. Dynamic ASD adds a per-image, per-channel offset computed from a
global pool over the whole frame: it cannot stream, so such a model exports for software use only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.quant.base import SignedBinaryClampedConst
from brevitas.quant.solver import WeightQuantSolver
from torch import Tensor, nn

from models.binarize.base import BinarizationMethod, Surrogate, TransformedBinaryQuant
from models.binarize.bnn import SignedBinaryActHardTanhSte


class IRNetTanh(Surrogate):
    """Forward sign(x); backward k * t * (1 - tanh^2(t x)), k = max(1/t, 1) (IR-Net's EDE)."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 1e-3

    @property
    def k(self) -> float:
        return max(1.0 / self.t, 1.0)

    def derivative(self, x: Tensor) -> Tensor:
        return self.k * self.t * (1.0 - torch.tanh(self.t * x) ** 2)


class WSDBinaryQuant(TransformedBinaryQuant):
    """sign(w + sigmoid(a_c) * 0.01 * mean(w_c).detach()), scale 1, a_c a parameter (init 0)."""

    def __init__(self, scaling_impl: nn.Module, surrogate_impl: Surrogate,
                 scaling_per_output_channel_shape: tuple[int, ...]) -> None:
        super().__init__(scaling_impl, surrogate_impl)
        self.wsd_a = nn.Parameter(torch.zeros(scaling_per_output_channel_shape))

    def transform(self, x: Tensor) -> Tensor:
        mean = x.detach().flatten(1).mean(1).reshape(self.wsd_a.shape)
        return x + torch.sigmoid(self.wsd_a) * 0.01 * mean


class WSDBinaryWeight(SignedBinaryClampedConst, WeightQuantSolver):
    """Weight Self Distribution binary weights with the IR-Net backward."""

    tensor_quant = WSDBinaryQuant
    surrogate_impl = IRNetTanh
    scaling_impl_type = ScalingImplType.CONST
    scaling_const = 1.0


class SignedBinaryActIRNet(SignedBinaryActHardTanhSte):
    """a_b = sign(a) (scale 1); backward IR-Net's k t (1 - tanh^2(t a))."""

    surrogate_impl = IRNetTanh


def _per_channel(v: Tensor, x: Tensor) -> Tensor:
    """Broadcast a (N, C) or (C,) tensor over x's spatial dims."""
    return v.reshape(*v.shape, *([1] * (x.dim() - 2)))


class StaticASD(nn.Module):
    """a~ = a + sigmoid(beta_c), beta in R^C initialised to 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + _per_channel(torch.sigmoid(self.beta), x)


class DynamicASD(nn.Module):
    """a~ = a + sigmoid(W2 relu(W1 GAP(a))): squeeze-excitation offset, no biases."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x
        return x + _per_channel(torch.sigmoid(self.fc2(torch.relu(self.fc1(pooled)))), x)


class SdBnn(BinarizationMethod):
    """WSD weights, static or dynamic ASD, IR-Net estimator schedule (key ``sd_bnn``)."""

    key = "sd_bnn"
    title = "SD-BNN: weight and activation self distribution, IR-Net gradient estimator"
    paper = "Xue et al., Self-Distribution Binary Neural Networks, Applied Intelligence 2022"
    weight_quant = WSDBinaryWeight
    act_quant = SignedBinaryActIRNet
    #: asd: 'static' (deployable) or 'dynamic' (the authors' SE branch, not deployable);
    #: t_start/t_end: IR-Net estimator sharpness at the first and last epoch
    defaults: dict[str, Any] = {"asd": "static", "t_start": 1e-3, "t_end": 10.0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options["asd"] not in ("static", "dynamic"):
            raise ValueError(f"sd_bnn option asd={self.options['asd']!r}: choose 'static' or "
                             "'dynamic'")
        if not 0 < float(self.options["t_start"]) <= float(self.options["t_end"]):
            raise ValueError("sd_bnn options need 0 < t_start <= t_end")

    def act(self, channels: int) -> nn.Module:
        asd = StaticASD(channels) if self.options["asd"] == "static" else DynamicASD(channels)
        return nn.Sequential(asd, super().act(channels))

    def t_at(self, epoch: int, epochs: int) -> float:
        """t_e = t_start * (t_end / t_start)^(e / (E - 1)); t_end for a single epoch."""
        t0, t1 = float(self.options["t_start"]), float(self.options["t_end"])
        frac = epoch / (epochs - 1) if epochs > 1 else 1.0
        return math.exp(math.log(t0) + frac * (math.log(t1) - math.log(t0)))

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        t = self.t_at(epoch, epochs)
        for m in model.modules():
            if isinstance(m, IRNetTanh):
                m.t = t

    def deployment(self) -> tuple[bool, str]:
        if self.options["asd"] == "dynamic":
            return False, ("dynamic ASD adds a per-image channel offset from a global pool over "
                           "the whole frame: needs a frame buffer and a second pass, cannot stream")
        return True, ("XNOR-popcount + integer thresholds (WSD baked into the weights, static ASD "
                      "folded into the thresholds)")
