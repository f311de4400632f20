"""Our RTL for a whole folded FINN dataflow graph: one :class:`hw.units.Unit` per node (the table in
:mod:`build_flows.backend.mapping`), stitched into one accelerator (``hw.stitch``), simulated with
Verilator on real images and compared bit for bit with FINN's Python execution of the same graph;
cycles per frame and latency measured.

Width converters and FIFOs are our own (``hw.stitch``), so FINN's are not expected in the graph.
Each unit's stream element (width, signedness) is derived from the producer unit, not from FINN's
annotation. :func:`build` stitches once and records the accelerator in ``accel.json`` beside
``accel.sv``; :func:`load` reopens it from there without stitching again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from build_flows import finn_env
from build_flows.backend.elem import Elem, decode, dtype_elem, encode
from build_flows.backend.mapping import node_unit
from build_flows.checks import BuildError
from hw import cost, fifosize, stitch, units, verilator, wrap

log = logging.getLogger(__name__)


def graph_units(model: Any) -> tuple[list[units.Unit], Elem, Elem, list[stitch.Edge]]:
    """Units for every node of a dataflow graph (a chain, or a graph with forks and joins), the
    input and output encodings, and the edges between the units. A node of two inputs gets a
    ``zip`` unit (``<node>_zip``) in front of its own; a node of two outputs (a fork) streams
    them on ``out0`` and ``out1``."""
    nodes = list(model.graph.node)
    elem_in = dtype_elem(model.get_tensor_datatype(model.graph.input[0].name))
    made: dict[str, tuple[str, str, Elem]] = {model.graph.input[0].name: ("", "", elem_in)}
    out: list[units.Unit] = []
    edges: list[stitch.Edge] = []
    for node in nodes:
        feeds = [made.get(t) for t in node.input if model.get_initializer(t) is None]
        if any(f is None for f in feeds):
            raise BuildError(f"dataflow graph: node {node.name} reads a tensor no earlier node "
                             "makes (the graph is not in topological order)")
        unit, elem = node_unit(model, node, feeds[0][2], tuple(f[2] for f in feeds[1:]))
        if len(feeds) == 2:
            zw = units.zip_(f"{node.name}_zip", feeds[0][2].width * unit.params["PE"],
                            feeds[1][2].width * unit.params["PE"])
            out.append(zw)
            for port, (src, sport, _) in zip(("in0", "in1"), feeds):
                if src:
                    edges.append(stitch.Edge(src, sport, zw.name, port))
            edges.append(stitch.Edge(zw.name, "out", unit.name, "in"))
        elif len(feeds) == 1 and feeds[0][0]:
            edges.append(stitch.Edge(feeds[0][0], feeds[0][1], unit.name, unit.inputs[0][0]))
        elif len(feeds) > 2:
            raise BuildError(f"node {node.name}: {len(feeds)} input streams; at most two")
        out.append(unit)
        ports = [p for p, _ in unit.outputs]
        if len(ports) != len(node.output):
            raise BuildError(f"node {node.name}: {len(node.output)} outputs, its unit "
                             f"{unit.module} has {len(ports)}")
        for t, port in zip(node.output, ports):
            made[t] = (unit.name, port, elem)
    oname = model.graph.output[0].name
    return out, elem_in, made[oname][2], edges


@dataclass
class Accelerator:
    """A stitched, compiled accelerator for one dataflow graph (``accel.json`` on disk)."""

    directory: Path
    sim: verilator.Sim
    elem_in: Elem
    elem_out: Elem
    in_width: int   # bits per input beat of the first unit
    out_width: int  # bits per output beat of the last unit
    in_elems: int   # elements per input frame
    out_elems: int  # elements per output frame
    units: int      # units, one per node
    stages: int     # units plus the FIFOs and width converters between them
    build_seconds: float

    @property
    def in_per_beat(self) -> int:
        return self.in_width // self.elem_in.width

    @property
    def out_per_beat(self) -> int:
        return self.out_width // self.elem_out.width


META = "accel.json"


def build(model: Any, directory: Path, pinned: dict[str, int] | None = None,
          size_fifos: bool = True, family: str | None = None) -> Accelerator:
    """Generate, stitch and compile the accelerator of dataflow graph ``model`` in ``directory``
    (top ``accel.sv``, memory files, ``accel.f`` file list, ``accel.json``).

    FIFO depths are sized by Verilator simulation (:func:`hw.fifosize.size`; ``size_fifos``
    False keeps the analytic depths of :func:`hw.stitch.fifo_depth_for`); ``pinned`` maps a node
    name to the depth of the FIFO in front of it, kept as given. ``accel.json`` records every
    FIFO's width, depth, bits and peak occupancy, the sizing's measured rate and, for a board
    ``family``, the cost model's estimate of the stitched design (:func:`estimate`)."""
    us, elem_in, elem_out, edges = graph_units(model)
    in_elems = int(np.prod(model.get_tensor_shape(model.graph.input[0].name)))
    pins = {f"fifo_{n}": d for n, d in (pinned or {}).items()}
    plan = None
    if size_fifos:
        t0 = time.time()
        try:
            plan = fifosize.size(us, directory / "fifo_sizing", in_elems * elem_in.width, pins,
                                 edges=edges)
        except fifosize.FifoError as exc:
            raise BuildError(f"FIFO depths: {exc}") from None
        log.info("FIFO sizing by simulation: %.0f s", time.time() - t0)
    elif pins:
        raise BuildError("pinned FIFO depths need FIFO sizing by simulation")
    top, stages = stitch.write(us, directory, "accel", depths=plan.depths if plan else None,
                               edges=edges)
    sources = stitch.filelist(stages, top)
    (directory / "accel.f").write_text("".join(f"{s}\n" for s in sources))
    meta = {"elem_in": asdict(elem_in), "elem_out": asdict(elem_out),
            "in_width": stages[0].in_width, "out_width": stages[-1].out_width,
            "in_elems": in_elems,
            "out_elems": int(np.prod(model.get_tensor_shape(model.graph.output[0].name))),
            "units": len(us), "stages": len(stages),
            "fifos": [{"name": s.name, "width": s.params["WIDTH"], "depth": s.params["DEPTH"],
                       "bits": s.params["WIDTH"] * s.params["DEPTH"]}
                      for s in stages if s.module == "fifo"],
            "fifo_sizing": plan.to_json() if plan else None,
            "cost_model": estimate(stages, family) if family else None}
    (directory / META).write_text(json.dumps(meta, indent=1))
    acc = load(directory)
    log.info("accelerator: %d units, %d stages, Verilator build %.0f s", len(us), len(stages),
             acc.build_seconds)
    return acc


def estimate(stages: list[units.Unit], family: str) -> dict[str, Any]:
    """The cost model's LUT/FF/BRAM36/DSP for the stitched stages (:mod:`hw.cost`), or why
    there is none (no calibration for the family)."""
    try:
        model = cost.CostModel.load(family)
    except (FileNotFoundError, ValueError) as exc:
        return {"family": family, "error": str(exc)}
    total = model.total(stages)
    return {"family": family, **{k: round(v, 1) for k, v in total.items()}}


def read_meta(directory: Path) -> dict[str, Any]:
    """``accel.json`` of the accelerator :func:`build` stitched in ``directory``: element
    encodings, beat widths, elements per frame, unit and stage counts."""
    path = directory / META
    if not path.is_file():
        raise BuildError(f"{path} is missing: run the rtl step first")
    return json.loads(path.read_text())


def load(directory: Path) -> Accelerator:
    """The accelerator :func:`build` wrote to ``directory``, compiled (Verilator's cache makes
    this instant when the same sources were compiled before); nothing is stitched again."""
    meta = read_meta(directory)
    sources = [Path(s) for s in (directory / "accel.f").read_text().split()]
    t0 = time.time()
    sim = verilator.build("accel", sources)  # cached by sources and parameters
    return Accelerator(directory, sim, Elem(**meta["elem_in"]), Elem(**meta["elem_out"]),
                       meta["in_width"], meta["out_width"], meta["in_elems"], meta["out_elems"],
                       meta["units"], meta["stages"], time.time() - t0)


def write_io_top(model: Any, acc: Accelerator) -> tuple[str, Path]:
    """``accel_io.sv``: the stitched accelerator with the stream ports the board's IODMAs see
    (FINN's port names; input padded to whole bytes; each output element resized to the graph's
    output datatype as the last node's FINN wrapper does, :func:`hw.wrap.wrapper_source`),
    plus ``accel_io_sim.sv`` for the Verilator harness and the file list ``accel_io.f``.
    Returns the simulation top's name and the file list."""
    odt = model.get_tensor_datatype(model.graph.output[0].name)
    port = dtype_elem(odt)
    if port.bipolar != acc.elem_out.bipolar or (acc.elem_out.signed and not port.signed) \
            or port.width < acc.elem_out.width:
        raise BuildError(f"the accelerator's output elements ({acc.elem_out}) do not fit the "
                         f"graph's output datatype {odt.name}")
    d = acc.directory
    whole = units.Unit("accel", "accel", {}, acc.in_width, acc.out_width)
    in_w = io_in_bits(acc)
    out_w = -(-acc.out_per_beat * port.width // 8) * 8
    (d / "accel_io.sv").write_text(wrap.wrapper_source(
        "accel_io", whole, {}, in_w, acc.out_per_beat, acc.elem_out.width, port.width,
        acc.elem_out.signed))
    (d / "accel_io_sim.sv").write_text(wrap.sim_adapter_source("accel_io", in_w, out_w))
    files = [*(d / "accel.f").read_text().split(), d / "accel_io.sv", d / "accel_io_sim.sv"]
    (d / "accel_io.f").write_text("".join(f"{f}\n" for f in files))
    return "accel_io_sim", d / "accel_io.f"


def io_in_bits(acc: Accelerator) -> int:
    """Bits of one input beat at the deployed top's port (``accel_io``): the beat padded to
    whole bytes, as the input DMA moves it."""
    return -(-acc.in_width // 8) * 8


def simulate(acc: Accelerator, frames: np.ndarray, seed: int = 0, p_valid: float = 1.0,
             p_ready: float = 1.0, max_cycles: int | None = None, dma_bits: int | None = None
             ) -> tuple[np.ndarray, dict[str, Any]]:
    """Stream ``frames`` (N, ...) of input values through the accelerator: outputs (N, out_elems)
    as values, and the timing (cycles from reset release to the last output; steady-state
    cycles per frame between the last output beats of the first and last frames; latency of the
    first frame). ``max_cycles`` bounds the simulation (default: 10 M cycles per frame).

    With ``dma_bits``, the input is paced as the shell's DMA delivers it, ``dma_bits`` per
    cycle: beat i is offered from cycle ``i * B / dma_bits`` on, B = :func:`io_in_bits` (no
    limit where a beat is at most ``dma_bits`` wide), so that the cycles per frame are those a
    board reaches, ``>= N_beats * B / dma_bits``."""
    n = len(frames)
    codes = encode(frames.reshape(n, -1), acc.elem_in)
    beats = units.beats_of(codes, acc.in_per_beat, acc.elem_in.width)
    out_beats_per_frame = acc.out_elems // acc.out_per_beat
    t0 = time.time()
    pace = io_in_bits(acc) / dma_bits if dma_bits else 0.0
    got, cycles, stamps = verilator.run(acc.sim, beats, n * out_beats_per_frame, acc.directory,
                                        seed=seed, p_valid=p_valid, p_ready=p_ready,
                                        max_cycles=max_cycles or 10_000_000 * n,
                                        in_interval=pace if pace > 1 else 0.0)
    secs = time.time() - t0
    out = decode(units.elements_of(got, acc.out_per_beat, acc.elem_out.width).reshape(n, -1),
                 acc.elem_out)
    ends = [stamps[(f + 1) * out_beats_per_frame - 1] for f in range(n)]
    timing = {"frames": n, "cycles": cycles, "latency_cycles": ends[0] + 1,
              "cycles_per_frame": (ends[-1] - ends[0]) / (n - 1) if n > 1 else float(cycles),
              "input_cycles_per_frame": len(beats) / n * max(pace, 1.0),
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
