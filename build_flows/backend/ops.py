"""bnnforge's RTL as FINN custom ops with an RTL backend, so that FINN's own passes use it.

Each class ``<Op>_bnn`` is FINN's hardware layer ``<Op>`` (its attributes, shapes, stream widths,
estimates and Python execution) with our :class:`RTLBackend`. They are registered in FINN's RTL
domain (``finn.custom_op.fpgadataflow.rtl``), where ``PrepareIP``, ``PrepareRTLSim``,
``CreateStitchedIP`` and ``despecialize_model`` look for RTL nodes:

* ``generate_hdl`` writes the node's memory files (weights and thresholds in the unit's layout,
  from the node's initializers) and a top module named after the node around its unit
  (``hw/rtl/<module>.sv``) with FINN's port names (``ap_clk``, ``ap_rst_n``, ``in0_V_*``,
  ``out0_V_*``; streams padded to whole bytes, output elements in the width of the node's output
  datatype);
* ``code_generation_ipi`` gives the Tcl that adds those files to a Vivado block design;
* ``prepare_rtlsim``/``execute_node`` with ``exec_mode="rtlsim"`` compile and run that same top in
  Verilator (no Vivado), so ``execute_onnx`` simulates the graph node by node.

One op class per entry of :data:`build_flows.backend.mapping.NODE_TYPES`, made from it (FINN's
layer class with :class:`BnnRTL` in front and the entry's method overrides), so a new node type
needs no edit here. :class:`UseBnnRTL` swaps them in after folding: every node of the table,
generic or specialized, becomes its ``_bnn`` op with the same name and attributes; other nodes
(FINN's FIFOs and width converters) stay FINN's. Raw outputs whose annotated datatype cannot hold
every value (FINN may call an XNOR popcount of 0..64 INT7) get the smallest datatype that can.
Importing this module registers the ops (:func:`register`); the build pipeline imports it, so
saved graphs holding them load wherever the pipeline is imported.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from build_flows import finn_env
from build_flows.backend import mapping
from build_flows.backend.elem import Elem, decode, dtype_elem, encode, reorder_k_c
from build_flows.checks import BuildError
from hw import units, verilator, wrap

finn_env.prepare()

from finn.custom_op.fpgadataflow import rtl as finn_rtl  # noqa: E402
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp  # noqa: E402
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend  # noqa: E402
from onnx import helper  # noqa: E402
from qonnx.core.datatype import DataType  # noqa: E402
from qonnx.custom_op.registry import add_op_to_domain, getCustomOp  # noqa: E402
from qonnx.transformation.base import Transformation  # noqa: E402

log = logging.getLogger(__name__)

DOMAIN = "finn.custom_op.fpgadataflow.rtl"
SUFFIX = "_bnn"
META = "bnnforge_unit.json"


def verilog_name(name: str) -> str:
    """A node name as a Verilog module name."""
    v = re.sub(r"\W", "_", name)
    return v if re.match(r"[A-Za-z_]", v) else f"n_{v}"


class BnnRTL(RTLBackend):
    """Our RTL backend for a FINN hardware layer (mixed in before the layer's class)."""

    def _layer(self) -> type:
        return next(c for c in type(self).__mro__[1:] if issubclass(c, HWCustomOp)
                    and not issubclass(c, RTLBackend) and c is not HWCustomOp)

    def _dir(self) -> Path:
        d = self.get_nodeattr("code_gen_dir_ipgen")
        if not d:
            raise BuildError(f"node {self.onnx_node.name}: no code_gen_dir_ipgen; generate its "
                             "HDL first (PrepareIP, or build_flows.backend.ops.generate)")
        return Path(d)

    def _meta(self) -> dict[str, Any]:
        path = self._dir() / META
        if not path.is_file():
            raise BuildError(f"node {self.onnx_node.name}: {path} is missing; generate its HDL "
                             "first")
        return json.loads(path.read_text())

    def generate_hdl(self, model: Any, fpgapart: str, clk: float) -> None:
        """Write the unit, its memories and the FINN-interface top into code_gen_dir_ipgen."""
        node = self.onnx_node
        d = self._dir()
        d.mkdir(parents=True, exist_ok=True)
        idt = model.get_tensor_datatype(node.input[0])
        odt = model.get_tensor_datatype(node.output[0])
        elem_in = dtype_elem(idt)
        more = tuple(dtype_elem(model.get_tensor_datatype(t)) for t in node.input[1:]
                     if model.get_initializer(t) is None)
        unit, elem_out = mapping.node_unit(model, node, elem_in, more)
        fin = sum(self.get_instream_width(i) for i in range(1 + len(more)))  # zipped inputs
        if unit.in_width != fin:
            raise BuildError(f"node {node.name}: our {unit.module} takes {unit.in_width}-bit "
                             f"beats, FINN's stream is {fin} bits")
        n_out = unit.out_width // elem_out.width
        port_ew = odt.bitwidth()
        top = verilog_name(node.name)
        if more or len(unit.outputs) > 1:  # a residual add (two inputs) or a fork
            return self._generate_ports(d, top, unit, elem_in, more, elem_out)
        if n_out * port_ew != self.get_outstream_width(0):
            raise BuildError(f"node {node.name}: {n_out} x {odt.name} outputs per beat != FINN's "
                             f"{self.get_outstream_width(0)}-bit stream")
        nt = mapping.node_type(node)
        offset = nt.port_offset(self, odt) if nt.port_offset else 0
        lo, hi = out_range(model, node, elem_out)
        if odt.name != "BIPOLAR" and not (odt.allowed(lo + offset) and odt.allowed(hi + offset)):
            raise BuildError(f"node {node.name}: outputs reach [{lo + offset}, {hi + offset}], "
                             f"more than {odt.name}; apply UseBnnRTL (it widens the datatype)")
        files = {k: str((d / v).absolute())
                 for k, v in unit.write_memories(d, prefix=f"{top}_").items()}
        (d / f"{top}.sv").write_text(wrap.wrapper_source(
            top, unit, files, self.get_instream_width_padded(0), n_out, elem_out.width, port_ew,
            elem_out.signed, offset))
        r_in, r_out = mapping.stream_reorders(node, unit)
        meta = {"top": top, "module": unit.module, "library": [str(unit.source)],
                "generated": [f"{top}.sv"],
                "memories": sorted(Path(f).name for f in files.values()),
                "in_per_beat": unit.in_width // elem_in.width, "out_per_beat": n_out,
                "reorder_in": r_in, "reorder_out": r_out}
        (d / META).write_text(json.dumps(meta, indent=1))
        self.set_nodeattr("gen_top_module", top)
        log.info("%s: %s in %s", node.name, unit.module, d / f"{top}.sv")

    def _generate_ports(self, d: Path, top: str, unit: units.Unit, elem_in: Elem,
                        more: tuple[Elem, ...], elem_out: Elem) -> None:
        """generate_hdl for a node with two inputs (behind a zip) or two outputs."""
        node = self.onnx_node
        pe = unit.params.get("PE", 1)
        if more and unit.module != "requant":
            raise BuildError(f"node {node.name}: two inputs into {unit.module}")
        n_in, n_out = 1 + len(more), len(unit.outputs)
        in_w = [self.get_instream_width_padded(i) for i in range(n_in)]
        out_w = [self.get_outstream_width_padded(i) for i in range(n_out)]
        zw = (pe * elem_in.width, pe * more[0].width) if more else None
        files = {k: str((d / v).absolute())
                 for k, v in unit.write_memories(d, prefix=f"{top}_").items()}
        (d / f"{top}.sv").write_text(wrap.ports_wrapper_source(top, unit, files, in_w, out_w, zw))
        lib = [str(unit.source)] + ([str(units.RTL / "zip.sv")] if more else [])
        meta = {"top": top, "module": unit.module, "library": lib, "generated": [f"{top}.sv"],
                "memories": sorted(Path(f).name for f in files.values()),
                "in_per_beat": pe, "out_per_beat": unit.out_width // elem_out.width,
                "in_widths": in_w, "out_widths": out_w, "reorder_in": None, "reorder_out": None}
        (d / META).write_text(json.dumps(meta, indent=1))
        self.set_nodeattr("gen_top_module", top)
        log.info("%s: %s (%d in, %d out) in %s", node.name, unit.module, n_in, n_out,
                 d / f"{top}.sv")

    def get_rtl_file_list(self, abspath: bool = False) -> list[Any]:
        """The unit's module from ``hw/rtl/`` (one file shared by every node using it, as
        finn-rtllib's are) and the node's generated top."""
        meta = self._meta()
        if abspath:
            return [*meta["library"], *(str((self._dir() / f).absolute())
                                        for f in meta["generated"])]
        return [*(Path(f).name for f in meta["library"]), *meta["generated"]]

    def code_generation_ipi(self) -> list[str]:
        """Tcl for Vivado IP Integrator: add our sources, instantiate the top as a module."""
        cmd = [f"add_files -norecurse {f}" for f in self.get_rtl_file_list(abspath=True)]
        cmd.append(f"create_bd_cell -type module -reference {self.get_nodeattr('gen_top_module')} "
                   f"{self.onnx_node.name}")
        return cmd

    def get_verilog_top_module_intf_names(self) -> dict[str, Any]:
        intf = HWCustomOp.get_verilog_top_module_intf_names(self)
        intf["s_axis"] = intf["s_axis"][:1]  # weights and thresholds live inside the unit
        return intf

    def prepare_rtlsim(self, behav: bool = False) -> None:
        """Compile the node's top (through a port-name adapter for our harness) with Verilator;
        rtlsim_so names the executable."""
        meta = self._meta()
        top = meta["top"]
        adapter = self._dir() / f"{top}_sim.sv"
        extra = []
        if "in_widths" in meta:  # several ports: split and zipped for the harness
            adapter.write_text(wrap.ports_sim_adapter_source(top, meta["in_widths"],
                                                             meta["out_widths"]))
            extra = [units.RTL / "dup.sv", units.RTL / "zip.sv"]
        else:
            adapter.write_text(wrap.sim_adapter_source(top, self.get_instream_width_padded(0),
                                                       self.get_outstream_width_padded(0)))
        files = list(dict.fromkeys([*map(Path, self.get_rtl_file_list(abspath=True)), *extra]))
        sim = verilator.build(f"{top}_sim", [*files, adapter])
        self.set_nodeattr("rtlsim_so", str(sim.exe))

    def execute_node(self, context: dict[str, np.ndarray], graph: Any) -> None:
        """``exec_mode="rtlsim"``: our top in Verilator on the input tensor (one frame per batch
        row); otherwise FINN's Python execution of the layer."""
        if self.get_nodeattr("exec_mode") != "rtlsim":
            return self._layer().execute_node(self, context, graph)
        node, meta = self.onnx_node, self._meta()
        exe = self.get_nodeattr("rtlsim_so")
        if not exe or not Path(exe).is_file():
            self.prepare_rtlsim()
            exe = self.get_nodeattr("rtlsim_so")
        if "in_widths" in meta:
            return self._execute_ports(context, meta, Path(exe))
        idt, odt = self.get_input_datatype(0), self.get_output_datatype(0)
        x = np.asarray(context[node.input[0]], dtype=np.float64)
        x = x.reshape(self.get_normal_input_shape(0))
        if meta["reorder_in"]:
            x = reorder_k_c(x, *meta["reorder_in"])
        ein, eout = dtype_elem(idt), dtype_elem(odt)
        beats = units.beats_of(encode(x, ein).reshape(-1), meta["in_per_beat"], ein.width)
        oshape = self.get_normal_output_shape(0)
        n_out = int(np.prod(oshape)) // meta["out_per_beat"]
        got, _, _ = verilator.run(verilator.Sim(Path(exe), f"{meta['top']}_sim"), beats, n_out,
                                  self._dir())
        y = decode(units.elements_of(got, meta["out_per_beat"], eout.width), eout)
        y = y.reshape(oshape)
        if meta["reorder_out"]:
            y = reorder_k_c(y, *meta["reorder_out"], inverse=True)
        context[node.output[0]] = y.astype(np.float32)
        return None


    def _execute_ports(self, context: dict[str, np.ndarray], meta: dict[str, Any],
                       exe: Path) -> None:
        """rtlsim of a node with several ports: input beats side by side {in1, in0}, output
        beats side by side {out1, out0} (see hw.wrap.ports_sim_adapter_source)."""
        node = self.onnx_node
        ins = [t for t in node.input if t in context]
        beats = None
        shift = 0
        for i, (t, w) in enumerate(zip(ins, meta["in_widths"])):
            e = dtype_elem(self.get_input_datatype(i))
            x = np.asarray(context[t], dtype=np.float64).reshape(self.get_normal_input_shape(i))
            b = units.beats_of(encode(x, e).reshape(-1), meta["in_per_beat"], e.width)
            beats = b if beats is None else [a | (v << shift) for a, v in zip(beats, b)]
            shift += w
        eout = dtype_elem(self.get_output_datatype(0))
        oshape = self.get_normal_output_shape(0)
        n_out = int(np.prod(oshape)) // meta["out_per_beat"]
        got, _, _ = verilator.run(verilator.Sim(exe, f"{meta['top']}_sim"), beats, n_out,
                                  self._dir())
        shift = 0
        for t, w in zip(node.output, meta["out_widths"]):
            part = [(g >> shift) & ((1 << w) - 1) for g in got]
            y = decode(units.elements_of(part, meta["out_per_beat"], eout.width), eout)
            context[t] = y.reshape(oshape).astype(np.float32)
            shift += w


def out_range(model: Any, node: Any, elem_out: Elem) -> tuple[int, int]:
    """The values the node's unit can put out, before FINN's ActVal offset."""
    nt = mapping.node_type(node)
    raw = nt.raw_range(model, node) if nt.raw_range else None
    if raw is not None:
        return raw
    if elem_out.bipolar:
        return -1, 1
    if elem_out.signed:
        return -(1 << (elem_out.width - 1)), (1 << (elem_out.width - 1)) - 1
    return 0, (1 << elem_out.width) - 1


def _op_class(op: str, nt: mapping.NodeType) -> type:
    """``<op>_bnn``: FINN's layer with our RTL backend in front and the entry's overrides."""
    return type(op + SUFFIX, (BnnRTL, nt.layer), {
        "__doc__": f"FINN's {op} on our RTL (``hw/rtl/``; see build_flows.backend.mapping).",
        "__module__": __name__, **nt.op_methods})


#: FINN hardware layer -> our op class, one per entry of the node-type table
OPS: dict[str, type] = {op: _op_class(op, nt) for op, nt in mapping.NODE_TYPES.items()}


#: layers of ours with no FINN implementation: SpecializeLayers picks this ``_rtl`` variant,
#: UseBnnRTL then swaps in the ``_bnn`` op
OWN_LAYERS = ("AddRequant",)


def register() -> None:
    """Make the ops findable by qonnx's registry and FINN's RTL-domain dictionary."""
    for cls in OPS.values():
        add_op_to_domain(DOMAIN, cls)
        finn_rtl.custom_op[cls.__name__] = cls
    for op in OWN_LAYERS:
        rtl = type(f"{op}_rtl", (OPS[op],), {"__module__": __name__})
        add_op_to_domain(DOMAIN, rtl)
        finn_rtl.custom_op[rtl.__name__] = rtl


register()


def _fit(lo: int, hi: int) -> Any:
    if lo >= 0:
        return DataType[f"UINT{max(1, int(hi).bit_length())}"]
    bits = max(int(lo).bit_length(), int(hi).bit_length()) + 1
    return DataType[f"INT{bits}"]


class UseBnnRTL(Transformation):
    """Swap every node we have RTL for (see the module docstring) for its ``_bnn`` op."""

    def apply(self, model: Any) -> tuple[Any, bool]:
        graph = model.graph
        for i, node in enumerate(list(graph.node)):
            op = mapping.base_op(node)
            if op is None or node.op_type == op + SUFFIX:
                continue
            new = helper.make_node(op + SUFFIX, list(node.input), list(node.output),
                                   name=node.name, domain=DOMAIN)
            new.attribute.extend(node.attribute)
            allowed = OPS[op](new).get_nodeattr_types()
            for a in [a for a in new.attribute if a.name not in allowed]:  # HLS-only ones
                new.attribute.remove(a)
            graph.node.remove(node)
            graph.node.insert(i, new)
            new = graph.node[i]  # insert stored a copy
            inst = getCustomOp(new)
            nt = mapping.NODE_TYPES[op]
            for name, value in nt.swap_attrs.items():
                inst.set_nodeattr(name, value)
            raw = nt.raw_range(model, new) if nt.raw_range else None
            if raw is not None:
                self._widen(model, new, inst, *raw)
        return model, False

    @staticmethod
    def _widen(model: Any, node: Any, inst: Any, lo: int, hi: int) -> None:
        odt = DataType[inst.get_nodeattr("outputDataType")]
        if odt.allowed(lo) and odt.allowed(hi):
            return
        new = _fit(lo, hi)
        log.warning("%s: accumulators reach [%d, %d], beyond its %s annotation; now %s",
                    node.name, lo, hi, odt.name, new.name)
        inst.set_nodeattr("outputDataType", new.name)
        model.set_tensor_datatype(node.output[0], new)
        for consumer in model.find_consumers(node.output[0]) or []:
            # the attribute of the input it reads (a residual add has inputDataType1 too)
            attr = "inputDataType1" if list(consumer.input).index(node.output[0]) == 1 \
                and any(a.name == "inputDataType1" for a in consumer.attribute) \
                else "inputDataType"
            if any(a.name == attr for a in consumer.attribute):
                getCustomOp(consumer).set_nodeattr(attr, new.name)


def generate(model: Any, directory: Path, fpgapart: str, clk_ns: float) -> Any:
    """Swap our ops in (:class:`UseBnnRTL`) and generate every node's HDL under
    ``directory/<node>``, where FINN's ``PrepareIP`` then finds it (it keeps existing code)."""
    model = model.transform(UseBnnRTL())
    for node in model.graph.node:
        if node.domain != DOMAIN or not node.op_type.endswith(SUFFIX):
            continue
        inst = getCustomOp(node)
        d = (directory / verilog_name(node.name)).absolute()
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        inst.set_nodeattr("code_gen_dir_ipgen", str(d))
        inst.code_generation_ipgen(model, fpgapart, clk_ns)
    return model
