"""An MVAU node as parameters and memories of our matrix unit (``hw/rtl/mvtu.sv``).

The unit takes XNOR-popcount (binary inputs, ``XNOR=1``) or integer inputs (CNV's 8-bit first
layer, Si-BNN's {0,1} activations) times bipolar weights, or integer inputs times multi-bit
integer weights (a residual net's 8-bit stem, 1x1 shortcut convs and FC head, ``W_W`` bits),
with one threshold per row or raw accumulators. Weights come from the node's (MW, MH)
initializer (bit 1 = +1, or two's complement) and thresholds from its (MH, 1) initializer, in
the unit's memory layout (``hw.model``). The accumulator of row r is

    XNOR:    P_r = sum_i [x_i == w_ri]            in [0, MW]
    integer: A_r = sum_i x_i * (2 w_ri - 1)      in [-MW m, MW m],  m = max |x|
    W_W > 1: A_r = sum_i x_i * w_ri              in [-MW m w, MW m w], w = max |w|

and the output is ``[acc >= ceil(T_r)]`` with thresholds clipped to that range (beyond it they
never or always fire), or the accumulator itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hw import model as hwm
from hw import units


@dataclass
class MatrixUnit:
    """A binary-weight MVAU node as parameters of ``hw/rtl/mvtu.sv`` plus its memories."""

    name: str
    params: dict[str, Any]
    weights: np.ndarray  # (MH, MW) bits, 1 = +1
    thresholds: np.ndarray | None  # (MH,) integers
    act_val: int  # FINN's output offset (ActVal): FINN output = unit output + act_val
    in_dtype: Any
    w_bits: int = 1  # > 1: ``weights`` are signed integers of that many bits

    def unit(self) -> units.Unit:
        """The ``mvtu`` instance (parameters and memory contents) for this node."""
        p = self.params
        return units.mvtu(self.name, self.weights, self.thresholds, p["PE"], p["SIMD"],
                          bool(p["XNOR"]), p["IN_W"], bool(p["IN_SIGNED"]), p["ACC_W"],
                          p["RAM_STYLE"], self.w_bits)

    def acc_range(self) -> tuple[int, int]:
        """The values a raw accumulator can take: [0, MW] (XNOR) or [-MW m, MW m]."""
        mw = self.params["MW"]
        if self.params["XNOR"]:
            return 0, mw
        m = max(abs(int(self.in_dtype.min())), abs(int(self.in_dtype.max())))
        wm = int(np.abs(self.weights).max()) if self.w_bits > 1 else 1
        return -mw * m * wm, mw * m * wm


def ram_style(style: str, bits: int) -> str:
    """FINN's ram_style for our unit: 'auto' picks block RAM above 16 kbit."""
    if style in ("block", "distributed"):
        return style
    return "block" if bits > 16384 else "distributed"


def matrix_unit(model: Any, node: Any) -> MatrixUnit:
    """Read a binary-weight MVAU node (generic or ``MVAU_hls``): XNOR mode (binary inputs) or
    integer inputs (8-bit first layer, {0,1} activations) times bipolar weights."""
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    if not node.op_type.startswith("MVAU"):
        raise ValueError(f"node {node.name} ({node.op_type}) is not an MVAU")
    xnor = inst.get_nodeattr("binaryXnorMode") == 1
    raw = np.asarray(model.get_initializer(node.input[1]))
    w_bits = 1
    if not xnor and not np.isin(raw, (-1, 1)).all():  # the annotation may say INT2
        if not np.array_equal(raw, np.rint(raw)):
            raise ValueError(f"node {node.name}: non-integer weights")
        w_bits = max(int(raw.min()).bit_length(), int(raw.max()).bit_length()) + 1
        if inst.get_nodeattr("inputDataType") == "BIPOLAR":
            raise ValueError(f"node {node.name}: bipolar inputs times {w_bits}-bit weights; our "
                             "matrix unit takes bipolar inputs in XNOR mode only")
    idt = DataType[inst.get_nodeattr("inputDataType")]
    mw, mh = inst.get_nodeattr("MW"), inst.get_nodeattr("MH")
    pe, simd = inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD")
    w = raw.T.astype(np.int64) if w_bits > 1 else (raw.T > 0).astype(np.int64)  # (MH, MW)
    in_max_abs = 1 if xnor else max(abs(int(idt.min())), abs(int(idt.max())))
    if w_bits > 1:
        in_max_abs *= int(np.abs(w).max())
    lo, hi = (0, mw) if xnor else (-mw * in_max_abs, mw * in_max_abs)
    act = inst.get_nodeattr("noActivation") == 0
    thr = None
    if act:
        t = np.asarray(model.get_initializer(node.input[2]))
        if t.shape[1] != 1:
            raise ValueError(f"node {node.name}: {t.shape[1]} thresholds per row; the unit "
                             "produces 1-bit outputs (one threshold)")
        # accumulators lie in [lo, hi]: thresholds beyond that never (or always) fire
        thr = np.clip(np.ceil(t[:, 0]), lo, hi + 1).astype(np.int64)
    acc_w = hwm.mvtu_acc_width(mw, xnor, in_max_abs)
    params = {"MW": mw, "MH": mh, "SIMD": simd, "PE": pe, "XNOR": int(xnor),
              "IN_W": 1 if xnor else idt.bitwidth(), "IN_SIGNED": int(idt.signed()),
              "W_W": w_bits,
              "ACTIVATION": int(act), "ACC_W": acc_w,
              "RAM_STYLE": ram_style(inst.get_nodeattr("ram_style"), mw * mh)}
    return MatrixUnit(node.name, params, w, thr, int(inst.get_nodeattr("ActVal")) if act else 0,
                      idt, w_bits)
