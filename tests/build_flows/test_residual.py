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


def negate_gates(model: torch.nn.Module) -> torch.nn.Module:
    """BBG's gate below zero on every other channel: the shortcut's integer scale is negative
    there, positive elsewhere."""
    gates = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "g"]
    assert gates
    with torch.no_grad():
        for g in gates:
            g[::2] *= -1
    return model


def small_resnet(method: str) -> torch.nn.Module:
    """The resnet with one unit of 8 and one of 16 channels (an identity shortcut and a strided
    AvgPool + 1x1 one): every node type of the full net, in fewer nodes."""
    from models.binarize import get_method
    from models.nets import ResNet
    from tests.models.test_export import randomize_bn

    torch.manual_seed(3)
    model = ResNet(get_method(method), (1, 28, 28), 10, stages=((8, 1), (16, 1)))
    randomize_bn(model, data=torch.rand(32, 1, 28, 28))
    return model.eval()


@pytest.fixture(scope="module")
def resnet_models(tmp_path_factory) -> dict[str, Path]:
    """bnn, si_bnn, and bbg with gates of both signs: the full resnet; ``small_bbg``: the small
    one of :func:`small_resnet` (node-level rtlsim compiles every node)."""
    from tests.models.test_export import calibrated

    root = tmp_path_factory.mktemp("resnet")
    out = {m: export_for_build("resnet", m, root / f"{m}.onnx") for m in ("bnn", "si_bnn")}
    out["bbg"] = export_for_build("resnet", "bbg", root / "bbg.onnx",
                                  model=negate_gates(calibrated("resnet", "bbg")))
    out["small_bbg"] = export_for_build("resnet", "bbg", root / "small_bbg.onnx",
                                        model=negate_gates(small_resnet("bbg")))
    return out


@pytest.mark.parametrize("method", ["bnn", "bbg", "si_bnn"])
def test_resnet_builds_with_zero_mismatches(tmp_path: Path, resnet_models, method: str) -> None:
    """Through rtlsim on real images; the bnn one also through its deployment package, whose
    driver runs on the simulation (validate.py --sim --self-test)."""
    deploy = method == "bnn"
    samples = 6 if deploy else 3  # the net's Python execution: about a second per image and step
    rc, report = run_build("--model", resnet_models[method], "--out", tmp_path / "b",
                           "--board", "Pynq-Z2", "--verify-samples", samples,
                           *(["--to-step", "deploy"] if deploy else []))
    assert rc == 0
    assert report["verification"]["inputs"].startswith("fashion-mnist test images")
    check_residual_report(report, samples)
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

    sw = swapped(tmp_path, resnet_models["small_bbg"], None)
    kinds = {n.op_type for n in sw.graph.node}
    assert {"AddRequant_bnn", "DuplicateStreams_bnn", "GlobalAccPool_bnn", "MVAU_bnn",
            "Thresholding_bnn", "ConvolutionInputGenerator_bnn", "FMPadding_bnn",
            "LabelSelect_bnn"} <= kinds, kinds
    counts, first = node_by_node(sw, frames=1)
    assert not first, first
    assert set(counts) == {n.name for n in sw.graph.node}

