"""build_flows/build.py on CNV: every deployable method, and BNN-PYNQ's published CNV-W1A1
folding with Yosys resources. The checks are ``test_build.py``'s; the builds live in a file of
their own so that the test workers share the long ones out."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.binarize import METHODS
from tests.build_flows.conftest import export_for_build, run_build
from tests.build_flows.test_build import CONFIGS, check_report, check_resources

pytestmark = [pytest.mark.finn, pytest.mark.verilator]


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_cnv_every_method(tmp_path: Path, build_models, method: str) -> None:
    # bnn: the published folding adapted to one input channel; the others: FINN's SetFolding.
    # CNV's Python execution takes about a second per image and verified step: the methods
    # verify on 2 real images each (every step and the stitched rtlsim), bnn on 5
    fold = ["--folding", CONFIGS / "cnv_w1a1_1ch.json"] if method == "bnn" else \
        ["--target-fps", "3000"]
    samples = 5 if method == "bnn" else 2
    rc, report = run_build("--model", build_models["cnv", method], "--out", tmp_path / "b",
                           *fold, "--verify-samples", samples)
    assert rc == 0
    check_report(report, samples)
    if method == "bnn":
        assert report["estimates"]["max_cycles"] == 32768
        assert report["performance"]["cycles_per_frame"] <= 32768 * 1.05
    kinds = {r["op_type"] for r in report["folding"]}
    assert {"MVAU_hls", "ConvolutionInputGenerator_rtl"} <= kinds


@pytest.mark.slow
@pytest.mark.yosys
def test_published_cnv_folding(tmp_path: Path) -> None:
    model = export_for_build("cnv", "bnn", tmp_path / "cnv3.onnx", shape=(3, 32, 32),
                             dataset="cifar10")
    rc, report = run_build("--model", model, "--out", tmp_path / "b",
                           "--folding", CONFIGS / "cnv_w1a1.json", "--verify-samples", 3,
                           resources=True)
    assert rc == 0
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
