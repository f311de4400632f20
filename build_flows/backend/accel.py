"""Our RTL for a whole folded FINN dataflow graph: one :class:`hw.units.Unit` per node, stitched
into one accelerator (``hw.stitch``), simulated with Verilator on real images and compared bit for
bit with FINN's Python execution of the same graph; cycles per frame and latency measured.

Node types: MVAU (binary weights; XNOR or integer inputs), Thresholding, FMPadding,
ConvolutionInputGenerator (standard and depthwise, no dilation), Pool (MaxPool), LabelSelect
(top-1). Width converters and
FIFOs are our own (``hw.stitch``), so FINN's are not expected in the graph. Each unit's stream
element (width, signedness) is derived from the producer unit, not from FINN's annotation: FINN
may call an XNOR popcount INT7 while our unit sends it as 7 unsigned bits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from build_flows import finn_env
from build_flows.checks import BuildError
from build_flows.rtl import matrix_unit
from hw import stitch, units, verilator
from hw import model as hwm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Elem:
    """How one stream element is encoded: ``width`` bits, two's complement when ``signed``;
    ``bipolar`` 1-bit elements stand for -1 (0) and +1 (1)."""

    width: int
    signed: bool = False
    bipolar: bool = False


def dtype_elem(dt: Any) -> Elem:
    """The stream encoding of a FINN DataType."""
    if dt.name == "BIPOLAR":
        return Elem(1, False, True)
    return Elem(dt.bitwidth(), dt.signed())


def _attr(inst: Any, name: str) -> Any:
    return inst.get_nodeattr(name)


def node_unit(model: Any, node: Any, elem_in: Elem) -> tuple[units.Unit, Elem]:
    """The unit for one dataflow node fed with ``elem_in`` elements; its output encoding."""
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    op = node.op_type
    for suffix in ("_hls", "_rtl", "_bnn"):  # FINN's HLS/RTL specializations and ours
        op = op.removesuffix(suffix)
    name = node.name
    if op == "MVAU":
        mu = matrix_unit(model, node)
        p = mu.params
        out = Elem(1) if p["ACTIVATION"] else Elem(p["ACC_W"], not p["XNOR"])
        return mu.unit(), out
    if op == "Thresholding":
        idt = DataType[_attr(inst, "inputDataType")]
        odt = DataType[_attr(inst, "outputDataType")]
        c = _attr(inst, "NumChannels")
        t = np.asarray(model.get_initializer(node.input[1]))
        t = np.broadcast_to(t, (c, t.shape[-1]))
        if not np.array_equal(t, np.ceil(t)):
            raise BuildError(f"node {name}: non-integer thresholds on integer inputs; run "
                             "round_thresholds first")
        act = int(_attr(inst, "ActVal"))
        if odt.name == "BIPOLAR":  # -1/+1 travel as bits: count 0/1
            bias, out = 0, Elem(1, False, True)
        else:
            bias, out = act, Elem(odt.bitwidth(), odt.signed())
        return units.thresholding(name, t.astype(np.int64), _attr(inst, "PE"), idt.bitwidth(),
                                  idt.signed(), out.width, bias), out
    if op == "ConvolutionInputGenerator":
        if list(_attr(inst, "Dilation")) != [1, 1]:
            raise BuildError(f"node {name}: dilation {_attr(inst, 'Dilation')} is not supported "
                             "by our sliding-window unit")
        ifm, k, s = (tuple(_attr(inst, a)) for a in ("IFMDim", "ConvKernelDim", "Stride"))
        style = _attr(inst, "ram_style") if "ram_style" in [a.name for a in node.attribute] \
            else "auto"
        return units.swg(name, ifm, _attr(inst, "IFMChannels"), _attr(inst, "SIMD"), k, s,
                         elem_in.width, bool(_attr(inst, "depthwise")), style), elem_in
    if op == "FMPadding":
        return units.fmpadding(name, tuple(_attr(inst, "ImgDim")), _attr(inst, "NumChannels"),
                               _attr(inst, "SIMD"), elem_in.width,
                               tuple(_attr(inst, "Padding"))), elem_in
    if op == "Pool":
        if _attr(inst, "Function") != "MaxPool":
            raise BuildError(f"node {name}: Pool function {_attr(inst, 'Function')}; our pool "
                             "unit does MaxPool")
        kk = int(np.prod(_attr(inst, "KernelSize")))
        return units.pool(name, _attr(inst, "Channels"), _attr(inst, "PE"), kk, elem_in.width,
                          elem_in.signed), elem_in
    if op == "LabelSelect":
        if _attr(inst, "K") != 1:
            raise BuildError(f"node {name}: top-{_attr(inst, 'K')}; our label select gives top-1")
        odt = DataType[_attr(inst, "outputDataType")]
        return units.label_select(name, _attr(inst, "Labels"), _attr(inst, "PE"), elem_in.width,
                                  elem_in.signed, odt.bitwidth()), Elem(odt.bitwidth())
    raise BuildError(f"node {name} ({node.op_type}): no bnnforge RTL for this node type")


def graph_units(model: Any) -> tuple[list[units.Unit], Elem, Elem]:
    """Units for every node of a dataflow graph (a chain), the input and output encodings."""
    nodes = list(model.graph.node)
    for a, b in zip(nodes, nodes[1:]):
        if b.input[0] != a.output[0]:
            raise BuildError(f"dataflow graph is not a chain: {b.name} does not read "
                             f"{a.name}'s output")
    elem_in = dtype_elem(model.get_tensor_datatype(model.graph.input[0].name))
    elem, out = elem_in, []
    for node in nodes:
        unit, elem = node_unit(model, node, elem)
        out.append(unit)
    return out, elem_in, elem


def encode(values: np.ndarray, elem: Elem) -> np.ndarray:
    """FINN tensor values as stream element codes."""
    v = np.asarray(values)
    if elem.bipolar:
        return (v > 0).astype(np.int64)
    return hwm.twos(np.rint(v).astype(np.int64), elem.width)


def decode(codes: np.ndarray, elem: Elem) -> np.ndarray:
    codes = np.asarray(codes, dtype=np.int64)
    if elem.bipolar:
        return 2 * codes - 1
    return hwm.signed(codes, elem.width) if elem.signed else codes


@dataclass
class Accelerator:
    """A stitched, compiled accelerator for one dataflow graph."""

    directory: Path
    stages: list[units.Unit]
    sim: verilator.Sim
    elem_in: Elem
    elem_out: Elem
    in_elems: int   # elements per input frame
    out_elems: int  # elements per output frame
    build_seconds: float

    @property
    def in_per_beat(self) -> int:
        return self.stages[0].in_width // self.elem_in.width

    @property
    def out_per_beat(self) -> int:
        return self.stages[-1].out_width // self.elem_out.width


def build(model: Any, directory: Path, fifo_depth: int = 2) -> Accelerator:
    """Generate, stitch and compile the accelerator of dataflow graph ``model`` in ``directory``
    (top ``accel.sv``, memory files, ``accel.f`` file list)."""
    us, elem_in, elem_out = graph_units(model)
    top, stages = stitch.write(us, directory, "accel", fifo_depth)
    sources = stitch.filelist(stages, top)
    (directory / "accel.f").write_text("".join(f"{s}\n" for s in sources))
    t0 = time.time()
    sim = verilator.build("accel", sources)  # cached by sources and parameters
    secs = time.time() - t0
    in_elems = int(np.prod(model.get_tensor_shape(model.graph.input[0].name)))
    out_elems = int(np.prod(model.get_tensor_shape(model.graph.output[0].name)))
    log.info("accelerator: %d units, %d stages, Verilator build %.0f s", len(us), len(stages), secs)
    return Accelerator(directory, stages, sim, elem_in, elem_out, in_elems, out_elems, secs)


def write_io_top(model: Any, acc: Accelerator) -> tuple[str, Path]:
    """``accel_io.sv``: the stitched accelerator with the stream ports the board's IODMAs see
    (FINN's port names; input padded to whole bytes; each output element resized to the graph's
    output datatype as the last node's FINN wrapper does, :func:`hw.stitch.wrapper_source`),
    plus ``accel_io_sim.sv`` for the Verilator harness and the file list ``accel_io.f``.
    Returns the simulation top's name and the file list."""
    odt = model.get_tensor_datatype(model.graph.output[0].name)
    port = dtype_elem(odt)
    if port.bipolar != acc.elem_out.bipolar or (acc.elem_out.signed and not port.signed) \
            or port.width < acc.elem_out.width:
        raise BuildError(f"the accelerator's output elements ({acc.elem_out}) do not fit the "
                         f"graph's output datatype {odt.name}")
    d = acc.directory
    whole = units.Unit("accel", "accel", {}, acc.stages[0].in_width, acc.stages[-1].out_width)
    in_w = -(-whole.in_width // 8) * 8
    out_w = -(-acc.out_per_beat * port.width // 8) * 8
    (d / "accel_io.sv").write_text(stitch.wrapper_source(
        "accel_io", whole, {}, in_w, acc.out_per_beat, acc.elem_out.width, port.width,
        acc.elem_out.signed))
    (d / "accel_io_sim.sv").write_text(stitch.sim_adapter_source("accel_io", in_w, out_w))
    files = [*(d / "accel.f").read_text().split(), d / "accel_io.sv", d / "accel_io_sim.sv"]
    (d / "accel_io.f").write_text("".join(f"{f}\n" for f in files))
    return "accel_io_sim", d / "accel_io.f"


def simulate(acc: Accelerator, frames: np.ndarray, seed: int = 0, p_valid: float = 1.0,
             p_ready: float = 1.0, max_cycles: int | None = None
             ) -> tuple[np.ndarray, dict[str, Any]]:
    """Stream ``frames`` (N, ...) of input values through the accelerator: outputs (N, out_elems)
    as values, and the timing (cycles from reset release to the last output; steady-state
    cycles per frame between the last output beats of the first and last frames; latency of the
    first frame). ``max_cycles`` bounds the simulation (default: 10 M cycles per frame)."""
    n = len(frames)
    codes = encode(frames.reshape(n, -1), acc.elem_in)
    beats = units.beats_of(codes, acc.in_per_beat, acc.elem_in.width)
    out_beats_per_frame = acc.out_elems // acc.out_per_beat
    t0 = time.time()
    got, cycles, stamps = verilator.run(acc.sim, beats, n * out_beats_per_frame, acc.directory,
                                        seed=seed, p_valid=p_valid, p_ready=p_ready,
                                        max_cycles=max_cycles or 10_000_000 * n)
    secs = time.time() - t0
    out = decode(units.elements_of(got, acc.out_per_beat, acc.elem_out.width).reshape(n, -1),
                 acc.elem_out)
    ends = [stamps[(f + 1) * out_beats_per_frame - 1] for f in range(n)]
    timing = {"frames": n, "cycles": cycles, "latency_cycles": ends[0] + 1,
              "cycles_per_frame": (ends[-1] - ends[0]) / (n - 1) if n > 1 else float(cycles),
              "sim_seconds": round(secs, 2)}
    return out, timing


def finn_outputs(model: Any, frames: np.ndarray) -> np.ndarray:
    """FINN's Python execution of the dataflow graph on each frame: (N, out_elems)."""
    finn_env.prepare()
    from finn.util.verification import despecialize_model
    from qonnx.core.onnx_exec import execute_onnx

    plain = despecialize_model(model)
    iname, oname = plain.graph.input[0].name, plain.graph.output[0].name
    shape = plain.get_tensor_shape(iname)
    return np.stack([np.asarray(execute_onnx(plain, {iname: f.reshape(shape).astype(np.float32)})
                                [oname]).reshape(-1) for f in frames])


def compare(rtl: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Exact comparison: mismatch count and the first one (sample, position, both values)."""
    bad = np.argwhere(rtl != ref)
    first = None
    if len(bad):
        s, pos = (int(i) for i in bad[0])
        first = {"sample": s, "position": pos, "rtl": int(rtl[s, pos]), "finn": float(ref[s, pos])}
    return {"samples": int(len(rtl)), "mismatches": int(len(bad)), "first_mismatch": first}
