"""Our RTL for FINN dataflow nodes: parameters and memory files from a folded node, and node-level
rtlsim (Verilator) against FINN's Python execution of the same node.

:func:`node_rtlsim` checks MVAU nodes with binary weights, XNOR-popcount (binary inputs) or integer
inputs (CNV's 8-bit first layer, Si-BNN's {0,1} activations), with one threshold per row or raw
accumulators, mapped to ``hw/rtl/mvtu.sv``, vector by vector. Weights come from the node's
(MW, MH) initializer (bit 1 = +1) and thresholds from its (MH, 1) initializer, in the unit's
memory layout (``hw.model``). :func:`unit_rtlsim` checks every other node type the accelerator
maps (:mod:`build_flows.accel`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from build_flows import finn_env
from hw import model as hwm
from hw import units, verilator

log = logging.getLogger(__name__)


@dataclass
class MatrixUnit:
    """A binary-weight MVAU node as parameters of ``hw/rtl/mvtu.sv`` plus its memories."""

    name: str
    params: dict[str, Any]
    weights: np.ndarray  # (MH, MW) bits, 1 = +1
    thresholds: np.ndarray | None  # (MH,) integers
    act_val: int  # FINN's output offset (ActVal): FINN output = unit output + act_val
    in_dtype: Any

    def unit(self) -> units.Unit:
        """The ``mvtu`` instance (parameters and memory contents) for this node."""
        p = self.params
        return units.mvtu(self.name, self.weights, self.thresholds, p["PE"], p["SIMD"],
                          bool(p["XNOR"]), p["IN_W"], bool(p["IN_SIGNED"]), p["ACC_W"],
                          p["RAM_STYLE"])


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
    if not xnor and not np.isin(raw, (-1, 1)).all():  # the annotation may say INT2
        raise ValueError(f"node {node.name}: {inst.get_nodeattr('weightDataType')} weights with "
                         "values other than -1/+1; our matrix unit takes binary weights")
    idt = DataType[inst.get_nodeattr("inputDataType")]
    mw, mh = inst.get_nodeattr("MW"), inst.get_nodeattr("MH")
    pe, simd = inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD")
    w = (raw.T > 0).astype(np.int64)  # (MH, MW)
    in_max_abs = 1 if xnor else max(abs(int(idt.min())), abs(int(idt.max())))
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
              "ACTIVATION": int(act), "ACC_W": acc_w,
              "RAM_STYLE": ram_style(inst.get_nodeattr("ram_style"), mw * mh)}
    return MatrixUnit(node.name, params, w, thr, int(inst.get_nodeattr("ActVal")) if act else 0,
                      idt)


def finn_node_output(plain: Any, node: Any, x: np.ndarray) -> np.ndarray:
    """FINN's Python execution of ``node`` of the despecialized graph ``plain`` on input ``x``."""
    from qonnx.custom_op.registry import getCustomOp

    pnode = next(n for n in plain.graph.node if n.name == node.name)
    ctx = {pnode.input[0]: x.astype(np.float32),
           pnode.output[0]: np.zeros(plain.get_tensor_shape(pnode.output[0]), np.float32)}
    for name in pnode.input[1:]:
        ctx[name] = plain.get_initializer(name)
    getCustomOp(pnode).execute_node(ctx, plain.graph)
    return ctx[pnode.output[0]]


def node_rtlsim(model: Any, node: Any, frames: int, workdir: Path, seed: int = 0,
                p_valid: float = 1.0, p_ready: float = 1.0) -> dict[str, Any]:
    """Simulate our RTL for ``node`` on ``frames`` random input frames (one vector per output
    pixel for convolutions) and compare every output with FINN's Python execution of the node;
    returns vectors, mismatches, the first mismatch (frame, vector, row) and the cycles."""
    unit = matrix_unit(model, node)
    hw_unit = unit.unit()  # the parameters the generated HDL uses (with the threshold form)
    p = hw_unit.params
    workdir.mkdir(parents=True, exist_ok=True)
    files = hw_unit.write_memories(workdir)
    in_shape = model.get_tensor_shape(node.input[0])
    rng = np.random.default_rng(seed)
    lo, hi = int(unit.in_dtype.min()), int(unit.in_dtype.max())
    if p["XNOR"]:
        lo, hi = 0, 1  # bipolar values travel as bits
    x = rng.integers(lo, hi + 1, (frames, *in_shape[1:]))
    finn_env.prepare()
    from finn.util.verification import despecialize_model

    plain = despecialize_model(model)
    ref = np.stack([finn_node_output(plain, node, x[f:f + 1]).reshape(-1, p["MH"])
                    for f in range(frames)]) - unit.act_val  # (frames, vectors per frame, MH)
    per_frame = ref.shape[1]
    sim = verilator.build("mvtu", [verilator.RTL / "mvtu.sv"], {**p, **files})
    nf = p["MH"] // p["PE"]
    n_vec = frames * per_frame
    beats, cycles, _ = verilator.run(sim, hwm.mvtu_input_beats(x.reshape(n_vec, p["MW"]),
                                                               p["SIMD"], p["IN_W"]),
                                     n_vec * nf, workdir, seed=seed, p_valid=p_valid,
                                     p_ready=p_ready)
    got = hwm.mvtu_outputs(beats, n_vec, p["MH"], p["PE"], p["ACTIVATION"], p["XNOR"],
                           p["ACC_W"]).reshape(frames, per_frame, p["MH"])
    bad = np.argwhere(got != ref.astype(np.int64))
    first = None
    if len(bad):
        f, v, r = (int(i) for i in bad[0])
        first = {"frame": f, "vector": v, "row": r, "rtl": int(got[f, v, r]),
                 "finn": float(ref[f, v, r])}
    return {"node": node.name, "vectors": n_vec, "mismatches": int(len(bad)),
            "first_mismatch": first, "cycles": cycles,
            "cycles_per_frame": cycles / frames, "params": p}


def reorder_k_c(t: np.ndarray, kk: int, fold: int, inverse: bool = False) -> np.ndarray:
    """(..., KK * C) in FINN's tensor order (k, c) -> stream order (cf, k, fold); ``inverse``
    goes back."""
    lead = t.shape[:-1]
    c = t.shape[-1] // kk
    if inverse:
        return t.reshape(*lead, c // fold, kk, fold).swapaxes(-3, -2).reshape(*lead, kk * c)
    return t.reshape(*lead, kk, c // fold, fold).swapaxes(-3, -2).reshape(*lead, kk * c)


def stream_reorders(unit: units.Unit) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(KK, fold) of the (k, c) -> (cf, k, fold) reordering between FINN's tensor and the unit's
    stream, on the input side and on the output side (None: same order). Pooling takes its
    windows channel-fold first, as the depthwise sliding-window unit emits them."""
    p = unit.params
    if unit.module == "pool":
        return (p["KK"], p["PE"]), None
    if unit.module == "swg" and p["DEPTHWISE"]:
        return None, (p["K_H"] * p["K_W"], p["SIMD"])
    return None, None


def unit_rtlsim(model: Any, node: Any, frames: int, workdir: Path, seed: int = 0,
                p_valid: float = 1.0, p_ready: float = 1.0) -> dict[str, Any]:
    """Node-level rtlsim of any node our accelerator maps (:func:`build_flows.accel.node_unit`):
    random input frames in the node's input datatype, our unit in Verilator, every output element
    compared with FINN's Python execution of the node (first mismatch with frame and position)."""
    from build_flows import accel

    finn_env.prepare()
    from finn.util.verification import despecialize_model

    idt = model.get_tensor_datatype(node.input[0])
    elem_in = accel.dtype_elem(idt)
    unit, elem_out = accel.node_unit(model, node, elem_in)
    rng = np.random.default_rng(seed)
    shape = model.get_tensor_shape(node.input[0])
    x = rng.integers(int(idt.min()), int(idt.max()) + 1, (frames, *shape[1:])).astype(np.float32)
    if elem_in.bipolar:
        x = 2 * rng.integers(0, 2, x.shape).astype(np.float32) - 1
    plain = despecialize_model(model)
    ref = np.stack([finn_node_output(plain, node, x[f:f + 1])[0] for f in range(frames)])
    stream_in, stream_ref = x, ref
    r_in, r_out = stream_reorders(unit)
    if r_in:
        stream_in = reorder_k_c(x, *r_in)
    if r_out:
        stream_ref = reorder_k_c(ref, *r_out)
    per_in = unit.in_width // elem_in.width
    beats = units.beats_of(accel.encode(stream_in, elem_in).reshape(-1), per_in, elem_in.width)
    per_out = unit.out_width // elem_out.width
    n_out = stream_ref.size // per_out
    workdir.mkdir(parents=True, exist_ok=True)
    files = unit.write_memories(workdir)
    sim = verilator.build(unit.module, [unit.source], {**unit.params, **files})
    got, cycles, _ = verilator.run(sim, beats, n_out, workdir, seed=seed, p_valid=p_valid,
                                   p_ready=p_ready)
    out = accel.decode(units.elements_of(got, per_out, elem_out.width), elem_out)
    cmp = accel.compare(out.reshape(frames, -1), stream_ref.reshape(frames, -1))
    return {"node": node.name, "module": unit.module, **cmp, "cycles": cycles}
