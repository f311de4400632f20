"""Node-level rtlsim: our unit for one folded FINN dataflow node in Verilator against FINN's Python
execution of the same node, every output compared exactly.

:func:`node_rtlsim` checks MVAU nodes with binary weights (:mod:`build_flows.backend.matrix`:
XNOR-popcount or integer inputs, thresholds or raw accumulators), vector by vector, with the
matrix unit's cycles. :func:`unit_rtlsim` checks any node of :data:`mapping.NODE_TYPES`, frame by
frame, in the node's stream order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from build_flows import finn_env
from build_flows.backend import mapping
from build_flows.backend.elem import compare, decode, dtype_elem, encode, reorder_k_c
from build_flows.backend.matrix import matrix_unit
from hw import model as hwm
from hw import units, verilator

log = logging.getLogger(__name__)


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


def unit_rtlsim(model: Any, node: Any, frames: int, workdir: Path, seed: int = 0,
                p_valid: float = 1.0, p_ready: float = 1.0) -> dict[str, Any]:
    """Node-level rtlsim of any node our accelerator maps (:func:`mapping.node_unit`): random input
    frames in the node's input datatype, our unit in Verilator, every output element compared
    with FINN's Python execution of the node (first mismatch with frame and position)."""
    finn_env.prepare()
    from finn.util.verification import despecialize_model

    idt = model.get_tensor_datatype(node.input[0])
    elem_in = dtype_elem(idt)
    unit, elem_out = mapping.node_unit(model, node, elem_in)
    rng = np.random.default_rng(seed)
    shape = model.get_tensor_shape(node.input[0])
    x = rng.integers(int(idt.min()), int(idt.max()) + 1, (frames, *shape[1:])).astype(np.float32)
    if elem_in.bipolar:
        x = 2 * rng.integers(0, 2, x.shape).astype(np.float32) - 1
    plain = despecialize_model(model)
    ref = np.stack([finn_node_output(plain, node, x[f:f + 1])[0] for f in range(frames)])
    stream_in, stream_ref = x, ref
    r_in, r_out = mapping.stream_reorders(node, unit)
    if r_in:
        stream_in = reorder_k_c(x, *r_in)
    if r_out:
        stream_ref = reorder_k_c(ref, *r_out)
    per_in = unit.in_width // elem_in.width
    beats = units.beats_of(encode(stream_in, elem_in).reshape(-1), per_in, elem_in.width)
    per_out = unit.out_width // elem_out.width
    n_out = stream_ref.size // per_out
    workdir.mkdir(parents=True, exist_ok=True)
    files = unit.write_memories(workdir)
    sim = verilator.build(unit.module, [unit.source], {**unit.params, **files})
    got, cycles, _ = verilator.run(sim, beats, n_out, workdir, seed=seed, p_valid=p_valid,
                                   p_ready=p_ready)
    out = decode(units.elements_of(got, per_out, elem_out.width), elem_out)
    cmp = compare(out.reshape(frames, -1), stream_ref.reshape(frames, -1))
    return {"node": node.name, "module": unit.module, **cmp, "cycles": cycles}
