"""Residual nets written here with Brevitas directly, with nothing of bnnforge (basic blocks of
two binary convs, a strided 1x1 shortcut conv, odd channel counts), through the whole build; and
the residual forms the flow cannot make exact, refused with the node named."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from tests.build_flows.conftest import run_build
from tests.build_flows.test_residual import check_residual_report
from tests.models.test_export import randomize_bn

pytestmark = [pytest.mark.finn, pytest.mark.verilator]


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
    torch.manual_seed(5)  # the weights too: every run builds the same net
    model = nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat),
        QuantConv2d(1, w0, 3, padding=1, bias=False, weight_quant=Int8WeightPerTensorFloat),
        nn.BatchNorm2d(w0), QuantIdentity(act_quant=Int8ActPerTensorFloat),
        Block(w0, w0, 1), Block(w0, w1, 2),
        nn.AvgPool2d(side // 2), QuantIdentity(act_quant=Int8ActPerTensorFloat), nn.Flatten(),
        QuantLinear(w1, 10, bias=False, weight_quant=Int8WeightPerTensorFloat))
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

    torch.manual_seed(1)
    model = nn.Sequential(
        QuantIdentity(act_quant=Int8ActPerTensorFloat),
        QuantConv2d(1, 8, 3, padding=1, bias=False, weight_quant=Int8WeightPerTensorFloat),
        nn.BatchNorm2d(8), QuantIdentity(act_quant=Int8ActPerTensorFloat), Odd(8, form),
        nn.Identity() if form == "no_quant" else QuantIdentity(act_quant=Int8ActPerTensorFloat),
        nn.AvgPool2d(8), nn.Flatten())
    randomize_bn(model, data=torch.rand(16, 1, 8, 8))
    path = export_plain(model.eval(), tmp_path / f"{form}.onnx", side=8)
    rc, _ = run_build("--model", path, "--out", tmp_path / "b", "--to-step", "residual",
                      "--verify-samples", 2)
    assert rc == 1
    assert one_line_error(capsys, message)


def test_one_input_requant_fit_is_checked_on_every_input() -> None:
    """A uniform 255-threshold quantizer on a wide integer stream: the shift-and-add form equals
    it on every input value; with one threshold moved off the grid (as float32 rounding does),
    the closest form differs on a few inputs next to thresholds, by one step each."""
    from build_flows.pipeline import residual as R

    lo, hi = -20_000, 20_000
    t = np.ceil(-12_345.6 + 97.31 * np.arange(255))[None, :]
    node = SimpleNamespace(name="MultiThreshold_stem")
    q = R.fit_exact(t, np.array([lo]), np.array([hi]), -128, node)
    x = np.arange(lo, hi + 1)
    want = -128 + (x[:, None] >= t[0][None, :]).sum(1)
    assert np.array_equal(np.clip((q.a[0] * x + q.b[0]) >> q.shift, q.lo, q.hi), want)
    off = t.copy()
    off[0, 100] += 1
    q = R.fit_exact(off, np.array([lo]), np.array([hi]), -128, node)
    want = -128 + (x[:, None] >= off[0][None, :]).sum(1)
    got = np.clip((q.a[0] * x + q.b[0]) >> q.shift, q.lo, q.hi)
    bad = np.flatnonzero(got != want)
    assert 1 <= len(bad) <= 3 and np.abs(got - want).max() == 1, x[bad]
    assert np.abs(x[bad][:, None] - off[0][None, :]).min(axis=1).max() <= 1
