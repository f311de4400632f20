"""Our RTL as FINN custom ops: swapped in after folding, found by FINN's own passes (PrepareIP,
PrepareRTLSim, execute_onnx in rtlsim mode, despecialize_model), and simulated node by node in
Verilator with every tensor equal to FINN's Python execution of the same graph."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.build_flows.test_rtl import folded, with_window_words

pytestmark = [pytest.mark.finn, pytest.mark.verilator]

PART = "xc7z020clg400-1"


def node_by_node(model, frames: int, seed: int = 0) -> tuple[dict[str, int], str | None]:
    """Every node's output in rtlsim against FINN's Python execution on random frames: the
    mismatch count per node and the first mismatch (node, frame, flat index, both values)."""
    from finn.util.verification import despecialize_model
    from qonnx.core.onnx_exec import execute_onnx

    plain = despecialize_model(model)
    iname = model.graph.input[0].name
    idt = model.get_tensor_datatype(iname)
    rng = np.random.default_rng(seed)
    counts = {n.name: 0 for n in model.graph.node}
    first = None
    for f in range(frames):
        x = rng.integers(int(idt.min()), int(idt.max()) + 1,
                         model.get_tensor_shape(iname)).astype(np.float32)
        got = execute_onnx(model, {iname: x}, return_full_exec_context=True)
        want = execute_onnx(plain, {iname: x}, return_full_exec_context=True)
        for n in model.graph.node:
            for out in n.output:  # a fork has two
                a = np.asarray(got[out]).reshape(-1)
                b = np.asarray(want[out]).reshape(-1)
                bad = np.flatnonzero(a != b)
                counts[n.name] += len(bad)
                if len(bad) and first is None:
                    i = int(bad[0])
                    first = f"{n.name} ({out}) frame {f} index {i}: rtl {a[i]:g}, FINN {b[i]:g}"
    return counts, first


def swapped(tmp_path: Path, model: Path, config: str, refold=None):
    from build_flows.backend import ops as finn_ops
    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP
    from finn.transformation.fpgadataflow.prepare_rtlsim import PrepareRTLSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    from qonnx.custom_op.registry import getCustomOp

    df = folded(tmp_path, model, config)
    if refold:
        df = refold(df)
    sw = finn_ops.generate(df, tmp_path / "nodes", PART, 10.0)
    assert all(n.domain == finn_ops.DOMAIN and n.op_type.endswith("_bnn") for n in sw.graph.node)
    dirs = {n.name: getCustomOp(n).get_nodeattr("code_gen_dir_ipgen") for n in sw.graph.node}
    sw = sw.transform(PrepareIP(PART, 10.0))  # FINN's pass keeps the code we generated
    assert dirs == {n.name: getCustomOp(n).get_nodeattr("code_gen_dir_ipgen")
                    for n in sw.graph.node}
    return sw.transform(PrepareRTLSim()).transform(SetExecMode("rtlsim"))


def test_tfc_through_finn_passes(tmp_path: Path, build_models) -> None:
    from build_flows.backend import ops as finn_ops
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    sw = swapped(tmp_path, build_models["tfc", "bnn"], "tfc_w1a1.json")
    assert [n.op_type for n in sw.graph.node] == ["Thresholding_bnn"] + ["MVAU_bnn"] * 4 + [
        "LabelSelect_bnn"]
    counts, first = node_by_node(sw, 3)
    assert not any(counts.values()), first
    # the last layer's popcounts (0..64) no longer ride on FINN's INT7 annotation
    last = sw.graph.node[4]
    assert getCustomOp(last).get_nodeattr("outputDataType") == "UINT7"

    # a saved graph with our ops loads and resolves them again
    sw.save(str(tmp_path / "swapped.onnx"))
    again = ModelWrapper(str(tmp_path / "swapped.onnx"))
    assert isinstance(getCustomOp(again.graph.node[1]), finn_ops.OPS["MVAU"])

    # what Vivado IP Integrator gets: existing files, one module per node, FINN's interfaces
    for node in sw.graph.node:
        inst = getCustomOp(node)
        tcl = inst.code_generation_ipi()
        files = [Path(c.split()[-1]) for c in tcl if c.startswith("add_files")]
        assert files and all(f.is_file() for f in files)
        assert tcl[-1] == (f"create_bd_cell -type module -reference "
                           f"{inst.get_nodeattr('gen_top_module')} {node.name}")
        top = files[-1].read_text()
        intf = inst.get_verilog_top_module_intf_names()
        (i_name, i_w), = intf["s_axis"]
        (o_name, o_w), = intf["m_axis"]
        assert re.search(rf"\[{i_w - 1}:0\] {i_name}_TDATA", top)
        assert re.search(rf"\[{o_w - 1}:0\] {o_name}_TDATA", top)

    # the check can fail: negated weights in one layer show up in that layer first
    mvau = getCustomOp(sw.graph.node[2])
    wfile = next(Path(mvau.get_nodeattr("code_gen_dir_ipgen")).glob("*weight_file.hex"))
    width = len(wfile.read_text().split()[0])
    mask = (1 << (mvau.get_nodeattr("PE") * mvau.get_nodeattr("SIMD"))) - 1
    wfile.write_text("".join(f"{int(w, 16) ^ mask:0{width}x}\n"
                             for w in wfile.read_text().split()))
    counts, first = node_by_node(sw, 2)
    assert counts[sw.graph.node[2].name] > 0 and first.startswith(sw.graph.node[2].name), first


def test_si_bnn_integer_layers_through_finn_passes(tmp_path: Path, build_models) -> None:
    """{0,1} activations: integer-input matrix units."""
    sw = swapped(tmp_path, build_models["tfc", "si_bnn"], "tfc_w1a1.json")
    counts, first = node_by_node(sw, 2)
    assert not any(counts.values()), first


@pytest.mark.slow
def test_cnv_through_finn_passes(tmp_path: Path, build_models) -> None:
    """Padding-free CNV: the 8-bit input quantizer, sliding windows (standard, several window
    words per beat, and depthwise), max pooling, the 8-bit and XNOR matrix units and label
    select. Our window op's FINN stream is window_words x SIMD elements wide."""
    from qonnx.custom_op.registry import getCustomOp

    sw = swapped(tmp_path, build_models["cnv", "bnn"], "cnv_w1a1_1ch.json", with_window_words)
    wide = [n for n in sw.graph.node if n.op_type == "ConvolutionInputGenerator_bnn"
            and getCustomOp(n).get_nodeattr("window_words") > 1]
    assert len(wide) == 6
    op = getCustomOp(wide[0])
    assert op.get_outstream_width() == op.get_instream_width() * op.get_nodeattr("window_words")
    assert {n.op_type for n in sw.graph.node} == {
        "Thresholding_bnn", "ConvolutionInputGenerator_bnn", "MVAU_bnn", "Pool_bnn",
        "LabelSelect_bnn"}
    counts, first = node_by_node(sw, 1)
    assert not any(counts.values()), first


def test_unsupported_node_is_named(tmp_path: Path, build_models) -> None:
    """A node our RTL cannot take gets an error naming it (here: an MVAU with a non-integer
    weight)."""
    from build_flows.backend import ops as finn_ops
    from build_flows.checks import BuildError
    from qonnx.custom_op.registry import getCustomOp

    df = folded(tmp_path, build_models["tfc", "bnn"], "tfc_w1a1.json")
    node = df.graph.node[2]
    w = np.array(df.get_initializer(node.input[1]))
    w[0, 0] = 2.5
    getCustomOp(node).set_nodeattr("binaryXnorMode", 0)
    df.set_initializer(node.input[1], w)
    with pytest.raises((BuildError, ValueError), match=node.name):
        finn_ops.generate(df, tmp_path / "nodes", PART, 10.0)


def test_ops_are_made_from_the_node_type_table() -> None:
    """One entry in backend.mapping.NODE_TYPES gives the op class (FINN's layer behind our RTL
    backend, with the entry's overrides), its registration in FINN's RTL domain, and the swap."""
    from build_flows.backend import mapping, ops
    from finn.custom_op.fpgadataflow import rtl as finn_rtl
    from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend

    assert set(ops.OPS) == set(mapping.NODE_TYPES)
    for op, nt in mapping.NODE_TYPES.items():
        cls = ops.OPS[op]
        assert cls.__name__ == op + "_bnn" and issubclass(cls, (ops.BnnRTL))
        assert issubclass(cls, nt.layer) and issubclass(cls, RTLBackend)
        assert finn_rtl.custom_op[cls.__name__] is cls
        for name in nt.op_methods:
            assert getattr(cls, name) is nt.op_methods[name]
