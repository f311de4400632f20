"""build_flows/build.py on CNV: every deployable method (bnn's through the deployment package on
the simulation), and BNN-PYNQ's published CNV-W1A1 folding with Yosys resources. The checks are
``test_build.py``'s; the builds live in a file of their own so that the test workers share the
long ones out."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.binarize import METHODS
from tests.build_flows.conftest import run_build
from tests.build_flows.test_build import (CONFIGS, brevitas_bnn_pynq, check_report,
                                          check_resources)
from tests.build_flows.test_deploy import check_simulated_driver

pytestmark = [pytest.mark.finn, pytest.mark.verilator]


#: methods whose CNV export is xnor's graph (per-channel weight scales on every binary layer,
#: the same nodes and attributes): the CNV build takes xnor's path, which
#: :func:`test_cnv_exports_share_xnors_graph` checks; their own builds are TFC's
SAME_AS_XNOR = ("bnn_plus", "staged_residual")


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(set(METHODS) - set(SAME_AS_XNOR)))
def test_cnv_every_method(tmp_path: Path, build_models, method: str) -> None:
    # bnn: the published folding adapted to one input channel, through the deployment package,
    # whose driver runs on the simulation; the others: our search for 3,000 FPS.
    # CNV's Python execution takes about a second per image and verified step: the methods
    # verify on 2 real images each (every step and the stitched rtlsim), bnn on 5
    fold = ["--folding", CONFIGS / "cnv_w1a1_1ch.json", "--to-step", "deploy"] \
        if method == "bnn" else ["--target-fps", "3000"]
    samples = 5 if method == "bnn" else 2
    rc, report = run_build("--model", build_models["cnv", method], "--out", tmp_path / "b",
                           *fold, "--verify-samples", samples)
    assert rc == 0
    check_report(report, samples)
    kinds = {r["op_type"] for r in report["folding"]}
    assert {"MVAU_hls", "ConvolutionInputGenerator_rtl"} <= kinds
    if method == "bnn":
        assert report["estimates"]["max_cycles"] == 32768
        assert report["performance"]["cycles_per_frame"] <= 32768 * 1.05
        check_simulated_driver(tmp_path / "b", build_models["cnv", method], 20, pad=2)


def test_cnv_exports_share_xnors_graph(build_models) -> None:
    """What lets :data:`SAME_AS_XNOR` skip their own CNV builds: each method's CNV export has
    xnor's nodes, attributes and initializer shapes (a scalar's as any one-element array), and
    per-channel (not unit) weight scales."""
    import onnx
    from onnx import numpy_helper

    def shape(a) -> tuple[int, ...] | str:
        return "scalar" if a.size == 1 else a.shape  # () and (1,) alike, as FINN reads them

    def graph(method: str) -> tuple[list, list]:
        g = onnx.load(build_models["cnv", method]).graph
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        nodes = [(n.op_type, n.domain, sorted((a.name, onnx.helper.get_attribute_value(a))
                                              for a in n.attribute if a.type != a.TENSOR),
                  [shape(inits[i]) if i in inits else None for i in n.input]) for n in g.node]
        scales = [inits[n.input[1]] for n in g.node if n.op_type == "BipolarQuant"
                  and n.input[1] in inits and inits[n.input[1]].size > 1]
        return nodes, scales

    ref_nodes, ref_scales = graph("xnor")
    assert len(ref_scales) == 9  # six convolutions, three fully connected layers
    for method in SAME_AS_XNOR:
        nodes, scales = graph(method)
        assert nodes == ref_nodes, f"{method}'s CNV export is not xnor's graph: build it on CNV"
        assert [s.shape for s in scales] == [s.shape for s in ref_scales], method


@pytest.mark.slow
@pytest.mark.yosys
def test_published_cnv_folding(tmp_path: Path) -> None:
    """BNN-PYNQ's published CNV-W1A1 folding on Brevitas' own CNV-W1A1 (3x32x32; a model from
    outside bnnforge, no metadata: verified on random inputs), with Yosys resources."""
    model = brevitas_bnn_pynq("cnv_1w1a", tmp_path / "cnv_1w1a.onnx")
    rc, report = run_build("--model", model, "--out", tmp_path / "b",
                           "--folding", CONFIGS / "cnv_w1a1.json", "--verify-samples", 2,
                           resources=True)
    assert rc == 0
    assert all(s["mismatches"] == 0 for s in report["verification"]["steps"])
    assert report["verification"]["rtlsim"]["mismatches"] == 0
    perf = report["performance"]  # published folding: 32,768 cycles per frame, 3,052 FPS
    assert 32768 <= perf["cycles_per_frame"] <= 32768 * 1.05 and perf["fps"] >= 3000
    check_resources(report)  # the published BNN-PYNQ CNV: 26,072 LUT, 124 BRAM36 with its shell
    assert report["resources"]["LUT"] <= 26072 and report["resources"]["BRAM36"] <= 124
    fold = {r["name"]: (r.get("PE"), r.get("SIMD")) for r in report["folding"]}
    assert [fold[f"MVAU_hls_{i}"] for i in range(9)] == [
        (16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (5, 1)]
    assert report["estimates"]["max_cycles"] == 32768
    assert round(report["estimates"]["estimated_fps"]) == 3052
    assert report["verification"]["inputs"].startswith("random uint8 inputs")
