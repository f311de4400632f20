"""XNOR-Net weight scaling (Rastegari et al., "XNOR-Net", ECCV 2016).

Weights carry one positive scale per output channel c, the mean absolute latent weight:

    forward:   W_b[c] = alpha_c * sign(W[c]),   alpha_c = mean_j |W[c, j]|   (j over C_in*k*k)
    backward:  dL/dW[c,i] = alpha_c * g[c,i] * 1{|W[c,i]| <= 1}
                            + sgn0(W[c,i]) / n * sum_j g[c,j] * sign(W[c,j])

(g = dL/dW_b; the second term is the gradient through alpha_c, as autograd gives it, with
sgn0 = d|w|/dw: +1, -1, or 0 at w = 0.)
Activations: sign with the hard-tanh STE of ``bnn``, no scale. XNOR-Net's activation scale map K
(a per-pixel mean of |input| over channels) depends on the data and cannot fold into per-channel
thresholds, so it is omitted.

Deployment: alpha_c > 0 folds into the thresholds; XNOR-popcount as for ``bnn``.
"""

from __future__ import annotations

from brevitas.core.scaling import ScalingImplType
from brevitas.core.stats import StatsOp
from brevitas.quant.base import SignedBinaryClampedConst
from brevitas.quant.solver import WeightQuantSolver

from models.binarize.base import BinarizationMethod, HardTanhSTE, SurrogateBinaryQuant
from models.binarize.bnn import SignedBinaryActHardTanhSte


class SignedBinaryWeightPerChannelAbsMean(SignedBinaryClampedConst, WeightQuantSolver):
    """W_b = alpha_c * sign(W), alpha_c = mean|W_c| per output channel; hard-tanh STE on sign."""

    tensor_quant = SurrogateBinaryQuant
    surrogate_impl = HardTanhSTE
    scaling_impl_type = ScalingImplType.STATS
    scaling_stats_op = StatsOp.AVE
    scaling_per_output_channel = True
    scaling_min_val = 1e-8


class Xnor(BinarizationMethod):
    """Per-output-channel alpha = mean|W| on sign weights; sign activations (key ``xnor``)."""

    key = "xnor"
    title = "XNOR-Net: per-output-channel alpha = mean|W| weight scaling"
    paper = "Rastegari et al., XNOR-Net, ECCV 2016"
    weight_quant = SignedBinaryWeightPerChannelAbsMean
    act_quant = SignedBinaryActHardTanhSte
