"""Residual nets through the whole build: bnnforge's ``resnet`` for the residual methods (bnn,
BBG with positive and negative gates, Si-BNN's {0,1} activations) on real Fashion-MNIST
images, and residual nets written here with Brevitas directly (no bnnforge metadata: basic
blocks of two binary convs, a strided 1x1 shortcut conv, odd channel counts); stitched rtlsim
equal to FINN's execution, FIFOs sized by simulation at >= 95% of the ideal rate; the node-level
rtlsim of every residual node type; the refusals of forms the flow cannot make exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.build_flows.conftest import export_for_build, run_build
from tests.models.test_export import randomize_bn

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


class Block(nn.Module):
    """A ResNet basic block of two binary 3x3 convs, padded with -1 (the bipolar 0 bit), with an
    identity or a strided 1x1 8-bit shortcut conv, re-quantized to 8 bits after the add."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        from brevitas.nn import QuantConv2d, QuantIdentity
        from brevitas.quant import (Int8ActPerTensorFloat, Int8WeightPerTensorFloat,
                                    SignedBinaryActPerTensorConst,
                                    SignedBinaryWeightPerTensorConst)

        super().__init__()

        def binary_conv(ci: int, co: int, s: int) -> nn.Module:
            return nn.Sequential(
                QuantIdentity(act_quant=SignedBinaryActPerTensorConst),
                nn.ConstantPad2d(1, -1.0),
                QuantConv2d(ci, co, 3, stride=s, bias=False,
                            weight_quant=SignedBinaryWeightPerTensorConst),
                nn.BatchNorm2d(co))

        self.body = nn.Sequential(binary_conv(cin, cout, stride), binary_conv(cout, cout, 1))
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                QuantConv2d(cin, cout, 1, stride=stride, bias=False,
                            weight_quant=Int8WeightPerTensorFloat), nn.BatchNorm2d(cout))
        self.out = QuantIdentity(act_quant=Int8ActPerTensorFloat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.short(x))


def brevitas_resnet(widths: tuple[int, int] = (12, 20), side: int = 16) -> nn.Module:
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat

    w0, w1 = widths
    model = nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat),
        QuantConv2d(1, w0, 3, padding=1, bias=False, weight_quant=Int8WeightPerTensorFloat),
        nn.BatchNorm2d(w0), QuantIdentity(act_quant=Int8ActPerTensorFloat),
        Block(w0, w0, 1), Block(w0, w1, 2),
        nn.AvgPool2d(side // 2), QuantIdentity(act_quant=Int8ActPerTensorFloat), nn.Flatten(),
        QuantLinear(w1, 10, bias=False, weight_quant=Int8WeightPerTensorFloat))
    torch.manual_seed(5)
    randomize_bn(model, data=torch.rand(32, 1, side, side))
    return model.eval()


def export_plain(model: nn.Module, path: Path, side: int = 16) -> Path:
    """Brevitas' QONNX export and qonnx's cleanup, the standard recipe, nothing of bnnforge."""
    from brevitas.export import export_qonnx
    from qonnx.util.cleanup import cleanup

    raw = path.with_suffix(".raw.onnx")
    with torch.no_grad():
        export_qonnx(model, input_t=torch.rand(1, 1, side, side), export_path=str(raw))
    cleanup(str(raw), out_file=str(path))
    return path


def test_brevitas_basic_blocks_with_a_strided_1x1_shortcut_build(tmp_path: Path) -> None:
    path = export_plain(brevitas_resnet(), tmp_path / "basic.onnx")
    rc, report = run_build("--model", path, "--out", tmp_path / "b", "--verify-samples", 4)
    assert rc == 0
    assert "random" in report["verification"]["inputs"]  # no metadata: random uint8 frames
    check_residual_report(report, 4)
    # the strided 1x1 shortcut became a 1x1 window and an 8-bit MVAU on the integer stream
    assert sum(op.startswith("AddRequant") for op in report["rtl"]["finn_nodes"].values()) == 4


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


class Odd(Block):
    """A block in a form the flow refuses: ``no_quant`` (the sum is not re-quantized),
    ``broadcast`` (the shortcut is the pooled map, another shape), ``spatial_gate`` (a gate
    per pixel, not per channel), ``scaled_conv`` (per-channel scales before the 1x1 conv)."""

    def __init__(self, c: int, form: str) -> None:
        from brevitas.nn import QuantConv2d
        from brevitas.quant import Int8WeightPerTensorFloat

        super().__init__(c, c, 1)
        self.form = form
        if form == "no_quant":
            self.out = nn.Identity()
        self.gate = nn.Parameter(torch.rand(1, c, 8, 8) + 0.5)
        self.scale = nn.Parameter(torch.rand(1, c, 1, 1) + 0.5)
        self.conv = QuantConv2d(c, c, 1, bias=False, weight_quant=Int8WeightPerTensorFloat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = {"no_quant": x, "broadcast": x.mean(dim=(2, 3), keepdim=True),
                 "spatial_gate": x * self.gate,
                 "scaled_conv": self.conv(x * self.scale)}[self.form]
        return self.out(self.body(x) + short)


@pytest.mark.parametrize("form,message", [
    ("no_quant", "an add of two streams with no quantizer after it"),
    ("broadcast", "disagree"),
    ("spatial_gate", "is not a per-channel constant"),
    ("scaled_conv", "per-channel scales before an integer-weight MatMul; this residual form "
                    "cannot be made exact")])
def test_residual_forms_that_cannot_be_exact_are_refused(tmp_path: Path, capsys, form: str,
                                                         message: str) -> None:
    from brevitas.nn import QuantConv2d, QuantIdentity
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat

    from tests.build_flows.test_build import one_line_error

    model = nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat),
        QuantConv2d(1, 8, 3, padding=1, bias=False, weight_quant=Int8WeightPerTensorFloat),
        nn.BatchNorm2d(8), QuantIdentity(act_quant=Int8ActPerTensorFloat), Odd(8, form),
        nn.Identity() if form == "no_quant" else QuantIdentity(act_quant=Int8ActPerTensorFloat),
        nn.AvgPool2d(8), nn.Flatten())
    torch.manual_seed(1)
    randomize_bn(model, data=torch.rand(16, 1, 8, 8))
    path = export_plain(model.eval(), tmp_path / f"{form}.onnx", side=8)
    rc, _ = run_build("--model", path, "--out", tmp_path / "b", "--to-step", "residual",
                      "--verify-samples", 2)
    assert rc == 1
    assert one_line_error(capsys, message)
