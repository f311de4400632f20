"""Stitch a chain of streaming units into one accelerator top module.

:func:`chain` puts a FIFO between every pair of units (in_tready and out_tvalid
of a FIFO are registers, so no combinational path crosses a unit boundary) and a data-width
converter wherever the producer's beat differs from the consumer's, as FINN's InsertDWC and
InsertFIFO do, with the FIFO on the converter's wide side.
:func:`write` emits ``<top>.sv`` and every unit's memory files into one directory;
the module reads its memories (``$readmemh``) from the directory it runs in, which is how
Verilator runs it and how the Vivado flow packages it. :func:`filelist` names the sources in
compile order.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from hw import units

log = logging.getLogger(__name__)

#: SystemVerilog keywords a node name could plausibly collide with (instance names)
KEYWORDS = frozenset(
    "always and assign begin buf case cell config const default disable do edge else end "
    "event final for force fork forever function generate if initial input join logic module "
    "nand nor not or output package parameter property reg repeat return sequence signed "
    "string struct task time type union unique unsigned var void wait while wire xor".split())


def lead_bits(unit: units.Unit) -> int:
    """Bits a producer must be able to write ahead of ``unit`` so that the unit's bursts of
    reading never wait on it.

    - A matrix unit with NF > 1 row groups reads its whole input vector (MW x IN_W bits) during
      the first group's SF cycles and nothing during the other (NF - 1) x SF: one vector.
    - A sliding-window generator, at the end of a frame, still holds the last K_H rows it emits
      windows from, so its own buffer cannot take much of the next frame; before it can emit
      the next frame's first window it needs (K_H - 1) rows plus K_W pixels of it. Buffered in
      front of it, that prefix enters at one beat per cycle instead of at the producer's rate.
    - Other units read at a steady rate: nothing.
    """
    p = unit.params
    if unit.module == "mvtu" and p["MH"] > p["PE"]:
        return p["MW"] * p["IN_W"]
    if unit.module == "swg":
        return ((p["K_H"] - 1) * p["IFM_W"] + p["K_W"]) * p["C"] * p["ELEM_W"]
    return 0


def fifo_depth_for(width: int, unit: units.Unit, minimum: int) -> int:
    """Depth of the ``width``-bit FIFO in front of ``unit``: :func:`lead_bits` of it in beats,
    plus one, or ``minimum`` if that is more."""
    lead = lead_bits(unit)
    return max(minimum, -(-lead // width) + 1) if lead else minimum


@dataclass(frozen=True)
class Edge:
    """A stream from ``src``'s output port ``src_port`` to ``dst``'s input port ``dst_port``."""

    src: str
    src_port: str
    dst: str
    dst_port: str


def chain_edges(nodes: list[units.Unit]) -> list[Edge]:
    """The edges of a chain: each unit's only output into the next unit's only input."""
    return [Edge(a.name, a.outputs[0][0], b.name, b.inputs[0][0]) for a, b in zip(nodes, nodes[1:])]


def _buffer_name(kind: str, dst: units.Unit, port: str) -> str:
    return f"{kind}_{dst.name}" if len(dst.inputs) == 1 else f"{kind}_{dst.name}_{port}"


def connect(nodes: list[units.Unit], edges: list[Edge] | None = None, fifo_depth: int = 2,
            depths: dict[str, int] | None = None) -> tuple[list[units.Unit], list[Edge]]:
    """The stages of a dataflow graph of ``nodes`` (in topological order) joined by ``edges``
    (default: a chain), with a FIFO and, where the widths differ, a width converter on every
    edge: ``fifo_<dst>`` and ``dwc_<dst>`` (``fifo_<dst>_<port>`` into a unit with several
    inputs). A FIFO is ``depths[name]`` deep where given (hw.fifosize sizes them by
    simulation), else at least ``fifo_depth`` (see :func:`fifo_depth_for`). Returns the stages
    in topological order and the wires between them; the one input port no edge feeds is the
    top's input, the one output port no edge leaves its output.

    Each FIFO sits on the wide side of its converter: after it where the consumer's beat is
    wider, before it otherwise. A FIFO on the narrow side of an upsizing converter would be
    drained at the producer's width, one consumer beat per ``in_width / out_width`` cycles, so a
    consumer that reads in bursts (a matrix unit reads its whole vector during its first row
    group) could never catch up on what was buffered while it computed: Brevitas' LFC-W1A1 folded
    by FINN's SetFolding (a 1-bit thresholding stream into a 28-lane matrix unit) ran at 1,176
    cycles per frame instead of its bottleneck's 784 that way. On the wide side both the producer
    and the consumer move one beat of their own per cycle through the converter.
    """
    if not nodes:
        raise ValueError("nothing to stitch: no units")
    edges = chain_edges(nodes) if edges is None else edges
    depths = depths or {}
    by_name = {u.name: u for u in nodes}
    stages: list[units.Unit] = []
    wires: list[Edge] = []
    for u in nodes:
        for e in (e for e in edges if e.dst == u.name):
            src = by_name[e.src]
            w_in = dict(src.outputs)[e.src_port]
            w_out = dict(u.inputs)[e.dst_port]
            width = max(w_in, w_out)
            name = _buffer_name("fifo", u, e.dst_port)
            buf = units.fifo(name, width, depths.get(name) or fifo_depth_for(width, u, fifo_depth))
            path = [buf]
            if w_in != w_out:
                conv = units.dwc(_buffer_name("dwc", u, e.dst_port), w_in, w_out)
                path = [conv, buf] if w_out > w_in else [buf, conv]
            prev = (e.src, e.src_port)
            for b in path:
                wires.append(Edge(prev[0], prev[1], b.name, "in"))
                prev = (b.name, "out")
            wires.append(Edge(prev[0], prev[1], u.name, e.dst_port))
            stages += path
        stages.append(u)
    return stages, wires


def chain(nodes: list[units.Unit], fifo_depth: int = 2,
          depths: dict[str, int] | None = None) -> list[units.Unit]:
    """The stages of a chain of ``nodes`` (see :func:`connect`)."""
    return connect(nodes, None, fifo_depth, depths)[0]


def param_literal(value: object) -> str:
    """A parameter value as SystemVerilog: strings quoted, numbers as integers."""
    if isinstance(value, str):
        return f'"{value}"'
    return str(int(value))


def top_ports(stages: list[units.Unit], wires: list[Edge]) -> tuple[tuple[str, str],
                                                                    tuple[str, str]]:
    """The (stage, port) of the top's input and of its output: the only ports no wire joins."""
    fed = {(w.dst, w.dst_port) for w in wires}
    read = {(w.src, w.src_port) for w in wires}
    ins = [(s.name, p) for s in stages for p, _ in s.inputs if (s.name, p) not in fed]
    outs = [(s.name, p) for s in stages for p, _ in s.outputs if (s.name, p) not in read]
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(f"a stitched top needs one free input and one free output port; "
                         f"free inputs {ins}, free outputs {outs}")
    return ins[0], outs[0]


def top_source(top: str, stages: list[units.Unit], files: dict[str, dict[str, str]],
               wires: list[Edge] | None = None) -> str:
    """SystemVerilog of a module ``top`` joining ``stages`` (already with FIFOs/converters) by
    ``wires`` (default: a chain)."""
    wires = chain_edges(stages) if wires is None else wires
    by_name = {s.name: s for s in stages}
    (in_stage, in_port), (out_stage, out_port) = top_ports(stages, wires)
    in_w = dict(by_name[in_stage].inputs)[in_port]
    out_w = dict(by_name[out_stage].outputs)[out_port]
    lines = [f"// {top}: {len(stages)} streaming stages, generated by hw.stitch.",
             f"module {top} (", "    input  logic clk,", "    input  logic rst_n,",
             f"    input  logic [{in_w - 1}:0] in_tdata,",
             "    input  logic in_tvalid,", "    output logic in_tready,",
             f"    output logic [{out_w - 1}:0] out_tdata,",
             "    output logic out_tvalid,", "    input  logic out_tready", ");"]
    signal = {(in_stage, in_port): "in", (out_stage, out_port): "out"}
    for i, w in enumerate(wires):
        signal[(w.src, w.src_port)] = signal[(w.dst, w.dst_port)] = f"s{i}"
        width = dict(by_name[w.src].outputs)[w.src_port]
        lines += [f"  logic [{width - 1}:0] s{i}_tdata;", f"  logic s{i}_tvalid, s{i}_tready;"]
    for s in stages:
        params = {**s.params, **files.get(s.name, {})}
        plist = ",\n".join(f"      .{k}({param_literal(v)})" for k, v in params.items())
        conns = ["      .clk(clk), .rst_n(rst_n)"]
        for port, _ in [*s.inputs, *s.outputs]:
            sig = signal[(s.name, port)]
            conns.append(f"      .{port}_tdata({sig}_tdata), .{port}_tvalid({sig}_tvalid), "
                         f".{port}_tready({sig}_tready)")
        lines += [f"  {s.module} #(", plist, f"  ) {s.name} (", ",\n".join(conns), "  );"]
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def write(nodes: list[units.Unit], directory: Path, top: str = "accel", fifo_depth: int = 2,
          depths: dict[str, int] | None = None,
          edges: list[Edge] | None = None) -> tuple[Path, list[units.Unit]]:
    """Write ``<top>.sv`` and the memory files of ``nodes`` joined by ``edges`` (default: a
    chain) to ``directory``.

    Returns the top's path and the stages (units, FIFOs and converters in topological order);
    ``depths`` as in :func:`connect`.
    """
    names = [u.name for u in nodes]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"unit names must be unique; repeated: {sorted(dup)}")
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", n) or n in KEYWORDS]
    if bad:
        raise ValueError(f"unit names must be SystemVerilog identifiers (instance names): {bad}")
    stages, wires = connect(nodes, edges, fifo_depth, depths)
    directory.mkdir(parents=True, exist_ok=True)
    files = {s.name: s.write_memories(directory, prefix=f"{s.name}_") for s in stages}
    path = directory / f"{top}.sv"
    path.write_text(top_source(top, stages, files, wires))
    log.info("stitched %d units (%d stages) into %s", len(nodes), len(stages), path)
    return path, stages


def filelist(stages: list[units.Unit], top_path: Path) -> list[Path]:
    """The sources to compile for a stitched top: each module once, then the top."""
    seen: dict[str, Path] = {}
    for s in stages:
        seen.setdefault(s.module, s.source)
    return [*seen.values(), top_path]
