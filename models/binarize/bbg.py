"""BBG, Balanced Binary neural networks with Gated residual (Shen et al., arXiv 1909.12117).

No code was published; this follows the abstract and secondary summaries (``methods.md``).

Balanced weights, per output channel c:

    W~[c] = W[c] - mean_j W[c, j]          (j over C_in*k*k)
    forward:   W_b[c] = alpha_c * sign(W~[c]),  alpha_c = mean_j |W~[c, j]|

backward: hard-tanh STE on sign (window on W~), the gradient through alpha_c and through the
centring by autograd (dW~/dW = I - 1/n).

Gated residual (residual nets only): y = BN(BinConv(sign(x))) + g (.) x, g in R^C a learnable
per-channel gate initialised to 1, x the block's real-valued (8-bit) input stream.
Activations: sign with the hard-tanh STE of ``bnn``.

Deployment: the balanced weights are free once sign(W~) and alpha are baked into the exported
weights. In a plain (non-residual) net BBG is an XNOR-Net-style BNN. In the residual net the gate
needs the shortcut stream: sign(a_c P + b_c + g_c x) keeps one multiply (g_c / a_c) on the 8-bit
shortcut and folds the rest into the threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.binarize.base import BinarizationMethod, TransformedBinaryQuant
from models.binarize.bnn import SignedBinaryActHardTanhSte
from models.binarize.xnor import SignedBinaryWeightPerChannelAbsMean


class CentredBinaryQuant(TransformedBinaryQuant):
    """t(W) = W - mean_j W[c, j] per output channel (alpha from the stats of t(W))."""

    def transform(self, x: Tensor) -> Tensor:
        return x - x.flatten(1).mean(1).reshape(-1, *([1] * (x.dim() - 1)))


class BalancedBinaryWeight(SignedBinaryWeightPerChannelAbsMean):
    """W_b = alpha_c * sign(W~), W~ = W - mean(W_c), alpha_c = mean|W~_c|."""

    tensor_quant = CentredBinaryQuant


class Gate(nn.Module):
    """y = g (.) x, g in R^C (init 1), broadcast over spatial dims."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.g.reshape(1, -1, *([1] * (x.dim() - 2)))


class Bbg(BinarizationMethod):
    """Balanced (centred) XNOR weights and a gated residual shortcut (key ``bbg``)."""

    key = "bbg"
    title = "BBG: balanced binary weights with gated residual"
    paper = "Shen et al., Balanced Binary Neural Networks with Gated Residual, arXiv 1909.12117"
    weight_quant = BalancedBinaryWeight
    act_quant = SignedBinaryActHardTanhSte

    def shortcut(self, channels: int) -> nn.Module:
        return Gate(channels)

    def deployment(self) -> tuple[bool, str]:
        return True, ("XNOR-popcount + integer thresholds (centring and alpha baked into the "
                      "weights); residual nets add a gated 8-bit shortcut stream")
