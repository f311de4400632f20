"""Stochastic weight binarization with an approximation factor (Ren et al. 2019, part (a) of
staged residual binarization; stochastic binarization after Courbariaux et al. 2015).

Weights, per output channel c with alpha_c = mean_j |W[c, j]|:

    forward (train):  W_b = alpha_c * s(W),  s(w) = +1 with probability p(w) = clip((w + 1) / 2, 0, 1),
                                             else -1 (a fresh draw at every forward pass)
    forward (eval):   W_b = alpha_c * sign(W)
    backward:         dL/dW[c,i] = alpha_c * g[c,i] * 1{|W[c,i]| <= 1}
                                   + sgn0(W[c,i]) / n * sum_j g[c,j] * s(W[c,j])

(straight-through estimator with hard-tanh window, plus the gradient through alpha_c; g = dL/dW_b,
sgn0 = d|w|/dw.) Activations: sign with the hard-tanh STE of ``bnn``.

Option ``init_range`` r (default 1): latent weights start uniform in [-r, r]. The rule reads w
on the scale of the clip range [-1, 1]; with PyTorch's default initialisation (|w| ~ 1/sqrt(fan
in), about 0.05 in TFC) p(w) ~ 0.5 for every weight, so each training pass draws nearly random
signs and the net takes epochs to leave chance (measured: 10.0 % train accuracy after one CNV
epoch). Scaling the initial weights does not change the eval-mode net's function (alpha_c
rescales, BatchNorm follows each layer).

Only the abstract of the paper is available; this follows ``methods.md``. Deployment: the eval
weights are XNOR-Net style, so XNOR-popcount with alpha folded into the thresholds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from models.binarize.base import BinarizationMethod, HardTanhSTE, sign
from models.binarize.bnn import SignedBinaryActHardTanhSte
from models.binarize.xnor import SignedBinaryWeightPerChannelAbsMean


class StochasticSignSTE(HardTanhSTE):
    """Train: +1 with probability clip((x+1)/2, 0, 1), else -1. Eval: sign(x).
    Backward: 1{|x| <= 1}."""

    def value(self, x: Tensor) -> Tensor:
        if not self.training:
            return sign(x)
        p = torch.clamp((x + 1.0) / 2.0, 0.0, 1.0)
        return torch.where(torch.rand_like(x) < p, torch.ones_like(x), -torch.ones_like(x))


class StochasticBinaryWeightPerChannelAbsMean(SignedBinaryWeightPerChannelAbsMean):
    """W_b = alpha_c * s(W) in training, alpha_c * sign(W) in eval; alpha_c = mean|W_c|."""

    surrogate_impl = StochasticSignSTE


class Stochastic(BinarizationMethod):
    """Stochastic weight binarization with per-channel alpha (key ``stochastic``)."""

    key = "stochastic"
    title = "Stochastic weight binarization with approximation factor alpha = mean|W|"
    paper = ("Ren et al., staged residual binarization, Computer Systems & Applications 2019; "
             "Courbariaux et al., BinaryConnect, NeurIPS 2015")
    weight_quant = StochasticBinaryWeightPerChannelAbsMean
    act_quant = SignedBinaryActHardTanhSte
    #: init_range: latent weights start uniform in [-init_range, init_range]
    defaults: dict[str, Any] = {"init_range": 1.0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not 0 < float(self.options["init_range"]) <= 1:
            raise ValueError(f"stochastic option init_range={self.options['init_range']!r} must "
                             "be in (0, 1]")
        self.latent_init_range = float(self.options["init_range"])
