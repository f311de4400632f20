"""bnnforge's ``resnet`` through the whole build for the residual methods (bnn, BBG with
positive and negative gates, Si-BNN's {0,1} activations) on real Fashion-MNIST images: stitched
rtlsim equal to FINN's execution, FIFOs sized by simulation at >= 95% of the ideal rate, the
deployment package's driver on the simulation; the node-level rtlsim of every residual node
type. Brevitas-made residual nets and the refusals: ``test_residual_brevitas.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.build_flows.conftest import export_for_build, run_build

pytestmark = [pytest.mark.finn, pytest.mark.verilator]


def check_residual_report(report: dict, samples: int) -> None:
    ver = report["verification"]
    assert all(s["samples"] == samples for s in ver["steps"])
    assert ver["rtlsim"]["samples"] == samples and ver["rtlsim"]["mismatches"] == 0
    sizing = report["rtl"]["fifo_sizing"]
    assert sizing["efficiency"] >= 0.95, sizing
    shortcut = [f for f in sizing["fifos"] if f["name"].endswith("_zip_in1")]
    assert shortcut and all(f["depth"] > 2 for f in shortcut), sizing["fifos"]
    perf = report["performance"]
    assert perf["cycles_per_frame"] <= sizing["ideal_cycles"] / 0.95


@pytest.fixture(scope="module")
def resnet_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resnet")
    return {m: export_for_build("resnet", m, root / f"{m}.onnx")
            for m in ("bnn", "bbg", "si_bnn")}


@pytest.mark.parametrize("method", ["bnn", "bbg", "si_bnn"])
def test_resnet_builds_with_zero_mismatches(tmp_path: Path, resnet_models, method: str) -> None:
    """Through rtlsim on real images; the bnn one also through its deployment package, whose
    driver runs on the simulation (validate.py --sim --self-test)."""
    deploy = method == "bnn"
    rc, report = run_build("--model", resnet_models[method], "--out", tmp_path / "b",
                           "--board", "Pynq-Z2", "--verify-samples", 6,
                           *(["--to-step", "deploy"] if deploy else []))
    assert rc == 0
    assert report["verification"]["inputs"].startswith("fashion-mnist test images")
    check_residual_report(report, 6)
    ops = set(report["rtl"]["finn_nodes"].values())
    assert {"AddRequant_bnn", "DuplicateStreams_bnn", "GlobalAccPool_bnn"} <= ops, ops
    if deploy:
        proc = subprocess.run([sys.executable, str(tmp_path / "b/deploy/validate.py"),
                               "--sim", "--self-test", "--out", str(tmp_path / "v.json")],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-500:]
        assert "6 frames, 0 mismatches" in proc.stdout + proc.stderr


def test_every_residual_node_type_in_node_level_rtlsim(tmp_path: Path, resnet_models) -> None:
    """Our RTL for each node of the folded resnet graph, simulated node by node through FINN's
    own passes, equal to FINN's Python execution (every output of every node)."""
    from tests.build_flows.test_finn_ops import node_by_node, swapped

    sw = swapped(tmp_path, resnet_models["bbg"], None)
    kinds = {n.op_type for n in sw.graph.node}
    assert {"AddRequant_bnn", "DuplicateStreams_bnn", "GlobalAccPool_bnn", "MVAU_bnn",
            "Thresholding_bnn", "ConvolutionInputGenerator_bnn", "FMPadding_bnn",
            "LabelSelect_bnn"} <= kinds, kinds
    counts, first = node_by_node(sw, frames=1)
    assert not first, first
    assert set(counts) == {n.name for n in sw.graph.node}


def test_negative_gates_build(tmp_path: Path) -> None:
    """BBG's gate below zero on some channels: the shortcut's integer scale is negative there."""
    from tests.models.test_export import calibrated, exportable

    model = calibrated("resnet", "bbg")
    gates = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "g"]
    assert gates
    with torch.no_grad():
        for g in gates:
            g[::2] *= -1
    from models.export import export_model

    path = export_model(exportable("bbg", model), (1, 28, 28), tmp_path / "neg.onnx")
    rc, report = run_build("--model", path, "--out", tmp_path / "b", "--verify-samples", 3)
    assert rc == 0
    check_residual_report(report, 3)
