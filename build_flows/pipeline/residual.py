"""Residual graphs to integer dataflow: the ``residual`` step (a no-op for plain chains).

After FINN's streamlining a residual unit ``y = Q8(BN(BinConv(act(x))) + shortcut(x))`` is

    q --Mul(s)--+--> MultiThreshold(act) --> ... XnorPopcount/MatMul --> acc --Mul(a)--Add(b)--+
                +--> [shortcut: identity, a gate Mul(g), or AvgPool(2) -> 1x1 MatMul -> Mul/Add] +
                                                                            Add --> MultiThreshold(Q8)

with per-channel float scales on both branches, which FINN's passes cannot fold (they need equal
scales on an add). Each form is reduced here:

* **The add and its quantizer** become one :class:`~build_flows.backend.addrequant.AddRequant`
  on the two integer tensors the branches start from (x: the accumulator, z: the shortcut's
  integer stream). Following each branch back through its Mul/Add/Transpose chain gives
  u = alpha_u x + beta_u and v = alpha_v z + beta_v per channel; the quantizer's thresholds
  t_j = t_0 + j D (uniform: an 8-bit quantizer's) count j with u + v >= t_j, that is
  ``floor(a x + g z + b)`` with a = alpha_u / D, g = alpha_v / D, b = (beta - t_0) / D + 1,
  clamped to the output range. The node computes ``floor((A x + G z + B) / 2^F)`` with
  A = round(a 2^F) etc. in exact integer arithmetic (the RTL is bit-exact to the node); F is
  chosen so that the coefficients' rounding moves the sum by at most 2^-18 of a quantization
  step over every (x, z) the streams can carry. That is below float32's own rounding of the
  same sum in FINN's graph (2^-24 relative to sums of up to 2^7 steps): where the two disagree,
  the value lies within float32 rounding of a threshold, and FINN's float execution is no
  better defined there than ours. Both scales may be negative (BBG's gate), and differ per channel.
* **A wide uniform quantizer on one stream** (the 8-bit stem's 255 thresholds on its
  accumulators, the head's on the global sum) becomes a one-input AddRequant whose integer
  form is checked against the thresholds on *every* input value: exact whenever one line
  passes through all the (integer) thresholds. Where float32 rounding of FINN's threshold
  computation put a threshold one off that grid, the closest line is taken if it differs on at
  most 1e-3 of the input values (by one step, logged with the count).
* **AvgPool(2) -> 1x1 conv** on the shortcut becomes a 2x2 stride-2 window and a MatMul with the
  1x1 weights repeated over the window: W . sum(x) = 4 W . avg(x), the 1/4 going into the scale
  that follows. **Global average pooling** becomes a sum (FINN's GlobalAccPool), 1/(H W) into the
  quantizer after it.
* The binary activation on the shortcut's stream (threshold on s q) absorbs its scale;
  transposes are pushed through forks and channelwise ops until everything is NHWC.

Refused, with the node named: an add whose result is not quantized (no MultiThreshold after
it), branches that do not start from integer streams or whose shapes disagree, scales that are
not per-channel constants (a gate that varies over pixels), quantizers that are not uniform.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from build_flows.backend import addrequant
from build_flows.checks import BuildError

log = logging.getLogger(__name__)

#: the coefficients' rounding moves a sum by at most this many quantization steps
PRECISION = 2.0 ** -18
#: at most this many bits per coefficient (two DSP48 multiplier ports)
MAX_COEF_BITS = 42
#: a one-input requantizer may differ from thresholds off the grid on this fraction of inputs
MAX_OFF_GRID = 1e-3


def _const(model: Any, node: Any) -> tuple[str, np.ndarray] | None:
    """(dynamic input, constant) of a two-input node with one initializer, else None."""
    a, b = node.input[0], node.input[1]
    ca, cb = model.get_initializer(a), model.get_initializer(b)
    if cb is not None and ca is None:
        return a, np.asarray(cb, np.float64)
    if ca is not None and cb is None:
        return b, np.asarray(ca, np.float64)
    return None


def _per_channel(c: np.ndarray, channels: int, node: Any) -> np.ndarray:
    """A scalar or (1, C, 1, 1)/(C,) constant as a (C,) vector; BuildError otherwise."""
    if c.size == 1:
        return np.full(channels, float(c.reshape(-1)[0]))
    flat = c.reshape(-1)
    if flat.size == channels and sum(d > 1 for d in c.shape) <= 1:
        return flat.astype(np.float64)
    raise BuildError(f"node {node.name}: constant of shape {c.shape} is not a per-channel "
                     "constant; a residual scale (or gate) must be one value per channel")


@dataclass
class Affine:
    """u = alpha * src + beta per channel, src an integer tensor (``nhwc``: channels last)."""

    src: str
    alpha: np.ndarray
    beta: np.ndarray
    nhwc: bool


def trace(model: Any, tensor: str, channels: int, nchw: bool) -> Affine:
    """Follow ``tensor`` back through Mul/Add by constants and Transposes to an integer tensor."""
    alpha, beta = np.ones(channels), np.zeros(channels)
    t = tensor
    while True:
        p = model.find_producer(t)
        dt = model.get_tensor_datatype(t)
        if p is not None and p.op_type in ("Mul", "Add") and _const(model, p) is not None:
            src, c = _const(model, p)
            v = _per_channel(c, channels, p)
            if p.op_type == "Mul":
                alpha = alpha * v
            else:
                beta = beta + alpha * v
            t = src
            continue
        if p is not None and p.op_type == "Transpose":
            perm = list(next(a.ints for a in p.attribute if a.name == "perm"))
            if perm not in ([0, 2, 3, 1], [0, 3, 1, 2]):
                raise BuildError(f"node {p.name}: transpose {perm} inside a residual branch")
            nchw = perm == [0, 2, 3, 1]  # its input is NCHW
            t = p.input[0]
            continue
        if not dt.is_integer():
            raise BuildError(f"tensor {t} ({dt.name}, from {p.name if p else 'the input'}) "
                             "feeds a residual add but is not an integer stream times per-channel "
                             "scales; this residual form cannot be made exact")
        return Affine(t, alpha, beta, not nchw)


def int_range(model: Any, tensor: str) -> tuple[np.ndarray | int, np.ndarray | int]:
    """The values an integer tensor takes: from the MatMul/XnorPopcount making it (per output
    channel) or its datatype."""
    p = model.find_producer(tensor)
    dt = model.get_tensor_datatype(tensor)
    if p is not None and p.op_type == "XnorPopcountMatMul":
        k = model.get_initializer(p.input[1]).shape[0]
        return 0, k
    if p is not None and p.op_type == "MatMul" and model.get_initializer(p.input[1]) is not None:
        w = np.asarray(model.get_initializer(p.input[1]), np.float64)
        idt = model.get_tensor_datatype(p.input[0])
        lo, hi = idt.min(), idt.max()
        w_lo = np.minimum(w * lo, w * hi).sum(axis=0)
        w_hi = np.maximum(w * lo, w * hi).sum(axis=0)
        return np.floor(w_lo).astype(np.int64), np.ceil(w_hi).astype(np.int64)
    return int(dt.min()), int(dt.max())


@dataclass
class Requant:
    """The integer form floor((A x + G z + B) / 2^F) clamped to [lo, hi]."""

    a: np.ndarray
    g: np.ndarray
    b: np.ndarray
    shift: int
    lo: int
    hi: int


def uniform_steps(thresholds: np.ndarray, node: Any) -> tuple[np.ndarray, np.ndarray]:
    """(t_0, D) per channel of uniformly spaced thresholds (C, N); BuildError otherwise."""
    t = np.asarray(thresholds, np.float64)
    if t.shape[1] < 2:
        raise BuildError(f"node {node.name}: {t.shape[1]} threshold(s); not a multi-bit "
                         "quantizer")
    d = np.diff(t, axis=1)
    step = (t[:, -1] - t[:, 0]) / (t.shape[1] - 1)
    if not np.allclose(d, step[:, None], rtol=1e-4, atol=0) or (step <= 0).any():
        raise BuildError(f"node {node.name}: the quantizer's thresholds are not uniformly "
                         "spaced; this residual form cannot be made exact")
    return t[:, 0], step


def fit(a: np.ndarray, g: np.ndarray, b: np.ndarray, x_max: float, z_max: float, lo: int,
        hi: int, node: Any) -> Requant:
    """Integer coefficients with 2^-F resolution such that rounding them moves the sum by at
    most :data:`PRECISION` over |x| <= x_max, |z| <= z_max."""
    span = (x_max + z_max + 1) / 2
    shift = int(np.ceil(np.log2(span / PRECISION)))
    coefs = np.concatenate([a, g])
    bits = int(np.ceil(np.log2(np.abs(coefs).max() * 2 ** shift + 1))) + 1
    if bits > MAX_COEF_BITS:
        raise BuildError(f"node {node.name}: the residual scales need {bits}-bit integer "
                         f"coefficients for exactness, more than {MAX_COEF_BITS}")
    scale = 2.0 ** shift
    return Requant(np.rint(a * scale).astype(np.int64), np.rint(g * scale).astype(np.int64),
                   np.rint(b * scale).astype(np.int64), shift, lo, hi)


def _widest_line(j: np.ndarray, t: np.ndarray) -> tuple[float, float] | None:
    """(p, r) maximizing m subject to t - 1 + m <= j p - r <= t - m, if m > 0."""
    from scipy.optimize import linprog

    ones = np.ones_like(j)
    a_ub = np.concatenate([np.stack([-j, ones, ones], 1), np.stack([j, -ones, ones], 1)])
    b_ub = np.concatenate([-(t - 1), t])
    res = linprog([0, 0, -1], A_ub=a_ub, b_ub=b_ub, bounds=[(1e-9, None), (None, None),
                                                              (0, 0.5)], method="highs")
    if not res.success or res.x[2] <= 1e-9:
        return None
    return float(res.x[0]), float(res.x[1])


def fit_exact(thresholds: np.ndarray, x_lo: np.ndarray, x_hi: np.ndarray, bias: int,
              node: Any) -> Requant | None:
    """One-input form equal to bias + #(x >= T_j) (T_j = ceil of the thresholds) on every
    integer x in [x_lo, x_hi] (per channel), or None where no shift up to 40 bits gives it.

    x >= T_j for integer x is x >= (j + 1) p - r whenever T_j = ceil((j + 1) p - r); then the
    count is floor((x + r) / p). p and r are fitted to the midpoints T_j - 1/2 of those
    intervals (thresholds clipped to the input range left out), A = 2^F / p, B = r 2^F / p, and
    the result is checked on every x."""
    t = np.ceil(np.asarray(thresholds, np.float64))
    c, n = t.shape
    x_lo, x_hi = np.broadcast_to(x_lo, c), np.broadcast_to(x_hi, c)
    p, r = np.zeros(c), np.zeros(c)
    for ch in range(c):
        j = np.arange(1, n + 1, dtype=np.float64)
        keep = (t[ch] > x_lo[ch]) & (t[ch] <= x_hi[ch])
        if keep.sum() < 2:
            return None
        line = _widest_line(j[keep], t[ch][keep])
        if line is None:  # float32 rounding put a threshold off the grid: the closest line
            slope, icept = np.polyfit(j[keep], t[ch][keep] - 0.5, 1)
            if slope <= 0:
                return None
            line = (float(slope), float(-icept))
        p[ch], r[ch] = line
    best: tuple[int, Requant] | None = None
    total = int(sum(int(x_hi[ch]) - int(x_lo[ch]) + 1 for ch in range(c)))
    for shift in range(8, 41, 2):
        scale = 2.0 ** shift
        a = np.rint(scale / p).astype(np.int64)
        b = np.rint(r * scale / p + bias * scale).astype(np.int64)
        wrong = 0
        for ch in range(c):
            x = np.arange(int(x_lo[ch]), int(x_hi[ch]) + 1, dtype=np.int64)
            want = bias + (x[:, None] >= t[ch][None, :]).sum(axis=1)
            got = np.clip((a[ch] * x + b[ch]) >> shift, bias, bias + n)
            wrong += int(np.count_nonzero(got != want))
        q = Requant(a, np.zeros(c, np.int64), b, shift, bias, bias + n)
        if wrong == 0:
            return q
        if best is None or wrong < best[0]:
            best = (wrong, q)
    if best is not None and best[0] <= MAX_OFF_GRID * total:
        log.warning("%s: no integer line through every threshold (float32 rounding put some "
                    "off the quantizer's grid); the shift-and-add form differs on %d of %d input "
                    "values, by one step", node.name, best[0], total)
        return best[1]
    return None
