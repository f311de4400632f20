"""BNN+ (Darabi et al., "BNN+: Improved Binary Network Training", arXiv 1812.11800).

Activations:

    forward:   y = sign(x)
    backward:  dy/dx = SS'(x) = beta * (2 - beta * x * tanh(beta * x / 2)) / (1 + cosh(beta * x))

(the derivative of the SignSwish 2 * sigmoid(beta x) * (1 + beta x (1 - sigmoid(beta x))) - 1;
``beta`` option, default 5, as larq's ``swish_sign``). Like the hard-tanh window it integrates
to 2, but it peaks at beta and is positive only for |x| < u0 / beta (u0 = 2.3994, the root of
u tanh(u / 2) = 2); beyond that it is slightly negative. On BatchNorm outputs of unit variance,
beta = 5 passes a positive gradient to about a third of the units and a negative one to most
others, until BatchNorm has shrunk its outputs into the window; beta = 2 passes about as many as
the hard-tanh window. On short schedules this costs beta = 5 accuracy (results/bnn_plus_beta).

Weights, with a trainable scale per output channel alpha_c > 0 initialised to mean_j |W[c, j]|:

    forward:   W_b = alpha_c * sign(W)
    backward:  dL/dW = alpha_c * g * 1{|W| <= 1}   (hard-tanh STE), dL/dalpha_c = sum_j g[c,j] sign(W[c,j])

alpha is stored as log2(alpha) (Brevitas LOG_FP restriction) so it stays positive.

Regularizer added to the loss (``reg`` option: 'l1' or 'l2'; ``lam`` option, default 1e-6),
summed over every binary-weight layer and weight:

    L1: lam * sum |alpha_c - |W[c, j]||        L2: lam * sum (alpha_c - |W[c, j]|)^2

Deployment: a plain BNN; alpha_c > 0 folds into the thresholds.
"""

from __future__ import annotations

from typing import Any

import torch
from brevitas.core.restrict_val import RestrictValueType
from brevitas.core.scaling import ScalingImplType
from torch import Tensor, nn

from models.binarize.base import BinarizationMethod, Surrogate, binary_weight_layers
from models.binarize.bnn import SignedBinaryActHardTanhSte
from models.binarize.xnor import SignedBinaryWeightPerChannelAbsMean


class SignSwish(Surrogate):
    """Forward sign(x); backward beta * (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))."""

    def __init__(self, beta: float = 5.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def derivative(self, x: Tensor) -> Tensor:
        b = self.beta
        return b * (2.0 - b * x * torch.tanh(b * x / 2.0)) / (1.0 + torch.cosh(b * x))


class SignedBinaryActSignSwish(SignedBinaryActHardTanhSte):
    """a_b = sign(a) (scale 1); backward SignSwish'(a) with ``beta``."""

    surrogate_impl = SignSwish
    beta = 5.0


class SignedBinaryWeightLearnedPerChannelScale(SignedBinaryWeightPerChannelAbsMean):
    """W_b = alpha_c * sign(W), alpha_c a parameter (log2 domain) initialised to mean|W_c|."""

    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS
    restrict_scaling_type = RestrictValueType.LOG_FP


class _AlphaCache:
    """Holds the alpha of a layer's last weight quantization (not copied, not pickled)."""

    def __init__(self) -> None:
        self.entry: tuple[int, int, Tensor] | None = None

    def __deepcopy__(self, memo: dict) -> "_AlphaCache":
        return _AlphaCache()

    def __reduce__(self) -> tuple:
        return (_AlphaCache, ())


def _remember_alpha(proxy: nn.Module, inputs: tuple, out: Any) -> None:
    """Forward hook on a weight-quant proxy: keep (weight storage, its version, alpha) of this
    pass (Brevitas hands the proxy an alias of the weight, so identity is by storage). Only in
    training: the regularizer is a training loss, and export traces the proxy."""
    if proxy.training and torch.is_grad_enabled():
        proxy._alpha_cache.entry = (inputs[0].data_ptr(), inputs[0]._version, out.scale)


def layer_alpha(layer: nn.Module) -> Tensor:
    """alpha of ``layer``: from the forward pass that just ran (taken once, while the weight is
    unchanged and with its graph when grad is on), else by quantizing the weight again."""
    cache = getattr(layer.weight_quant, "_alpha_cache", None)
    entry, w = (cache.entry if cache is not None else None), layer.weight
    if cache is not None:
        cache.entry = None
    if entry is not None and entry[0] == w.data_ptr() and entry[1] == w._version and (
            entry[2].requires_grad or not torch.is_grad_enabled()):
        return entry[2]
    return layer.quant_weight().scale


class BnnPlus(BinarizationMethod):
    """SignSwish activation gradient, learned alpha, alpha-|W| regularizer (key ``bnn_plus``)."""

    key = "bnn_plus"
    title = "BNN+: SignSwish activation gradient, trainable alpha with L1/L2 regularizer"
    paper = "Darabi et al., BNN+: Improved Binary Network Training, arXiv 1812.11800"
    weight_quant = SignedBinaryWeightLearnedPerChannelScale
    act_quant = SignedBinaryActSignSwish
    #: beta: SignSwish sharpness; reg: 'l1' or 'l2'; lam: regularizer weight
    defaults: dict[str, Any] = {"beta": 5.0, "reg": "l1", "lam": 1e-6}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options["reg"] not in ("l1", "l2"):
            raise ValueError(f"bnn_plus option reg={self.options['reg']!r}: choose 'l1' or 'l2'")
        if not self.options["beta"] > 0:
            raise ValueError(f"bnn_plus option beta={self.options['beta']!r} must be > 0")
        if not self.options["lam"] >= 0:
            raise ValueError(f"bnn_plus option lam={self.options['lam']!r} must be >= 0")

    @staticmethod
    def _init_alpha(layer: nn.Module) -> nn.Module:
        """Initialise alpha_c = mean|W_c| now (Brevitas would do it at the first forward), and
        keep each forward's alpha for the regularizer (quantizing again costs a third of a step).
        """
        with torch.no_grad():
            layer.quant_weight()
        layer.weight_quant._alpha_cache = _AlphaCache()
        layer.weight_quant.register_forward_hook(_remember_alpha)
        return layer

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        return self._init_alpha(super().linear(in_features, out_features))

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
        return self._init_alpha(super().conv(in_channels, out_channels, kernel_size, stride,
                                             padding))

    def act(self, channels: int) -> nn.Module:
        from brevitas.nn import QuantIdentity
        return QuantIdentity(act_quant=self.act_quant, beta=float(self.options["beta"]),
                             return_quant_tensor=False)

    def extra_loss(self, model: nn.Module) -> Tensor | None:
        """lam * sum over binary layers of |alpha_c - |W_cj|| (l1) or its square (l2)."""
        terms = []
        for layer in binary_weight_layers(model):
            w = layer.weight
            alpha = layer_alpha(layer).reshape(w.shape[0], *([1] * (w.dim() - 1)))
            dev = alpha - w.abs()
            terms.append(dev.abs().sum() if self.options["reg"] == "l1" else dev.pow(2).sum())
        if not terms:
            return None
        return float(self.options["lam"]) * torch.stack(terms).sum()
