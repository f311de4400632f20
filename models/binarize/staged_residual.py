"""Staged residual binarization (Ren et al., Computer Systems & Applications 2019).

Only the abstract and keywords (stochastic quantization, high-order residual quantization) are
available; this follows ``methods.md``'s reading.

Activations of every binary layer, order-2 residual binarization with a weight lam on the second
order:

    H1 = sign(x),  b1 = mean|x|,  R = x - b1 * H1,  H2 = sign(R),  b2 = mean|R|
    forward:   x^ = b1 * H1 + lam * b2 * H2
    backward:  dx^/dx = 1{|x| <= 1}   (hard-tanh STE through the whole quantizer; b1, b2 constant)

b1, b2 are batch statistics in training and running averages (momentum 0.1) in eval, like
BatchNorm. Stage 1 trains at order 2 (lam = 1) for a fraction ``stage1`` of the epochs; stage 2
anneals lam to 0 over a fraction ``anneal_frac`` of the remaining epochs (``anneal`` 'linear' or
'cosine' shape) and fine-tunes at order 1, where x^ = b1 * sign(x): a plain BNN activation whose
positive scale folds into the next thresholds, so inference costs nothing extra.

Weights (option ``weights``): 'xnor' W_b = alpha_c * sign(W) (part (b)), or 'stochastic'
alpha_c * s(W) in training (part (a), see ``stochastic``); alpha_c = mean|W_c|.

Export requires lam = 0 in every layer (the order-2 output is not a binary tensor); a model still
in stage 1 or 2 is refused with a clear error.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from brevitas.core.bit_width import BitWidthConst
from brevitas.core.utils import StatelessBuffer
from brevitas.quant.base import SignedBinaryClampedConst
from brevitas.quant.solver import ActQuantSolver
from torch import Tensor, nn

from models.binarize.base import BinarizationMethod, sign
from models.binarize.stochastic import StochasticBinaryWeightPerChannelAbsMean
from models.binarize.xnor import SignedBinaryWeightPerChannelAbsMean


class ResidualBinaryQuant(nn.Module):
    """x^ = b1 sign(x) + lam b2 sign(x - b1 sign(x)); returns (x^, b1, 0, 1) (Brevitas contract)."""

    def __init__(self, residual_momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = float(residual_momentum)
        self.register_buffer("lam", torch.tensor(1.0))
        self.register_buffer("running_b1", torch.tensor(1.0))
        self.register_buffer("running_b2", torch.tensor(1.0))
        self.bit_width = BitWidthConst(1)
        self.zero_point = StatelessBuffer(torch.tensor(0.0))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        with torch.no_grad():
            h1 = sign(x)
            if self.training:
                b1 = x.abs().mean()
                r = x - b1 * h1
                b2 = r.abs().mean()
                self.running_b1.mul_(1 - self.momentum).add_(self.momentum * b1)
                self.running_b2.mul_(1 - self.momentum).add_(self.momentum * b2)
            else:
                b1, b2 = self.running_b1.clone(), self.running_b2.clone()
                r = x - b1 * h1
            y = b1 * h1
            if float(self.lam) > 0:
                y = y + self.lam * b2 * sign(r)
            mask = (x.abs() <= 1).to(x.dtype)
        y = y + (x - x.detach()) * mask  # value y, gradient 1{|x| <= 1}
        return y, b1, self.zero_point(), self.bit_width()


class ResidualBinaryAct(SignedBinaryClampedConst, ActQuantSolver):
    """Order-2 residual binary activation with annealed second order."""

    tensor_quant = ResidualBinaryQuant
    residual_momentum = 0.1
    min_val = -1.0
    max_val = 1.0


class StagedResidual(BinarizationMethod):
    """Order-2 residual activations annealed to order 1 (key ``staged_residual``)."""

    key = "staged_residual"
    title = "Staged residual binarization: order-2 residual activations annealed to order 1"
    paper = "Ren et al., staged residual binarization, Computer Systems & Applications 2019"
    weight_quant = SignedBinaryWeightPerChannelAbsMean
    act_quant = ResidualBinaryAct
    #: weights: 'xnor' or 'stochastic'; stage1: fraction of epochs at order 2; anneal_frac:
    #: fraction of the stage-2 epochs spent annealing lam 1 -> 0; anneal: 'linear' or 'cosine'
    defaults: dict[str, Any] = {"weights": "xnor", "stage1": 0.5, "anneal_frac": 0.5,
                                "anneal": "linear"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        if o["weights"] not in ("xnor", "stochastic"):
            raise ValueError(f"staged_residual option weights={o['weights']!r}: choose 'xnor' or "
                             "'stochastic'")
        if o["anneal"] not in ("linear", "cosine"):
            raise ValueError(f"staged_residual option anneal={o['anneal']!r}: choose 'linear' or "
                             "'cosine'")
        if not (0 <= float(o["stage1"]) < 1 and 0 < float(o["anneal_frac"]) <= 1):
            raise ValueError("staged_residual options need 0 <= stage1 < 1 and 0 < anneal_frac <= 1")
        if o["weights"] == "stochastic":  # as the stochastic method (see its init_range)
            self.weight_quant = StochasticBinaryWeightPerChannelAbsMean
            self.latent_init_range = 1.0

    def lam_at(self, epoch: int, epochs: int) -> float:
        """lam for epoch ``epoch`` (from 0) of ``epochs``: 1 in stage 1, annealed to 0 in stage 2.

        Stage 1 has S = min(round(stage1 * E), E - 1) epochs; annealing spans
        A = max(1, round(anneal_frac * (E - S))) epochs and reaches 0 at epoch S + A - 1 <= E - 1.
        """
        s = min(round(float(self.options["stage1"]) * epochs), epochs - 1)
        if epoch < s:
            return 1.0
        a = max(1, round(float(self.options["anneal_frac"]) * (epochs - s)))
        t = min((epoch - s + 1) / a, 1.0)
        if self.options["anneal"] == "linear":
            return 1.0 - t
        return 0.5 * (1.0 + math.cos(math.pi * t))

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        lam = self.lam_at(epoch, epochs)
        for m in model.modules():
            if isinstance(m, ResidualBinaryQuant):
                m.lam.fill_(lam)

    def prepare_export(self, model: nn.Module) -> nn.Module:
        for name, m in model.named_modules():
            if isinstance(m, ResidualBinaryQuant) and float(m.lam) > 0:
                raise ValueError(
                    f"staged_residual: activation {name} still has residual order 2 "
                    f"(lam = {float(m.lam):.3g}); only a model whose stage 2 has annealed lam to 0 "
                    "exports (train all its epochs)")
        return super().prepare_export(model)

    def deployment(self) -> tuple[bool, str]:
        return True, ("after stage 2 (lam = 0): XNOR-popcount + integer thresholds, the "
                      "activation scale b1 folded into the thresholds")
