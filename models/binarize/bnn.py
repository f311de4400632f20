"""Baseline BNN (Courbariaux, Hubara et al., "Binarized Neural Networks", NeurIPS 2016).

Weights and activations are binarized with the sign function and no scale:

    forward:   y = sign(x) = +1 if x >= 0 else -1
    backward:  dL/dx = dL/dy * 1{|x| <= 1}        (straight-through estimator, hard-tanh window)

Latent weights are clipped to [-1, 1] after every optimizer step. Deployment: XNOR-popcount with
integer thresholds (BatchNorm and sign fold into one threshold per channel).
"""

from __future__ import annotations

from brevitas.quant.base import SignedBinaryClampedConst
from brevitas.quant.solver import ActQuantSolver, WeightQuantSolver

from models.binarize.base import BinarizationMethod, HardTanhSTE, SurrogateBinaryQuant


class SignedBinaryWeightHardTanhSte(SignedBinaryClampedConst, WeightQuantSolver):
    """W_b = sign(W) (scale 1); dW_b/dW = 1{|W| <= 1}."""

    tensor_quant = SurrogateBinaryQuant
    surrogate_impl = HardTanhSTE
    scaling_const = 1.0


class SignedBinaryActHardTanhSte(SignedBinaryClampedConst, ActQuantSolver):
    """a_b = sign(a) (scale 1); da_b/da = 1{|a| <= 1}."""

    tensor_quant = SurrogateBinaryQuant
    surrogate_impl = HardTanhSTE
    scaling_const = 1.0
    min_val = -1.0
    max_val = 1.0


class Bnn(BinarizationMethod):
    """sign weights and activations, hard-tanh STE, no scaling (key ``bnn``)."""

    key = "bnn"
    title = "BNN: sign with hard-tanh straight-through estimator"
    paper = "Hubara, Courbariaux et al., Binarized Neural Networks, NeurIPS 2016"
    weight_quant = SignedBinaryWeightHardTanhSte
    act_quant = SignedBinaryActHardTanhSte
