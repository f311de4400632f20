"""build_flows/build.py: every deployable method through all open steps with zero mismatches,
reports, the published foldings, resume, and one clear error per kind of bad input. The CNV
builds are in ``test_build_cnv.py`` (a file of their own, so that test workers share them out)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from build_flows.pipeline import search
from models.binarize import METHODS
from tests.build_flows.conftest import export_for_build, run_build

pytestmark = [pytest.mark.finn, pytest.mark.verilator]

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "build_flows" / "configs"
OPEN_STEPS = ["qonnx_to_finn", "tidy_up", "pre_post", "streamline", "xnor_popcount",
              "residual", "round_thresholds", "hw_layers", "dataflow_partition", "specialize",
              "folding", "minimize_bit_width", "estimates", "rtl", "rtlsim"]
GRAPH_STEPS = OPEN_STEPS[:OPEN_STEPS.index("estimates")]


def one_line_error(capsys, message: str) -> bool:
    """The build printed exactly one error line ('build failed: ...' for a failed step,
    '...build.py: error: ...' for a request refused before anything was written), and it
    contains ``message``."""
    lines = [ln for ln in capsys.readouterr().err.splitlines()
             if ln.startswith("build failed:") or "build.py: error:" in ln]
    assert len(lines) == 1 and message in lines[0], lines
    return True


def check_report(report: dict, samples: int) -> None:
    assert [s["name"] for s in report["steps"]] == OPEN_STEPS + ["deploy"] * bool(report["deploy"])
    ver = report["verification"]
    assert [s["step"] for s in ver["steps"]] == GRAPH_STEPS
    assert all(s["samples"] == samples and s["mismatches"] == 0 for s in ver["steps"])
    sim = ver["rtlsim"]  # the stitched accelerator in Verilator, every output equal
    assert sim["samples"] == samples and sim["mismatches"] == 0 and sim["first_mismatch"] is None
    perf = report["performance"]
    assert perf["estimated_cycles_per_frame"] == report["estimates"]["max_cycles"]
    assert perf["cycles_per_frame"] >= perf["estimated_cycles_per_frame"] * 0.99
    assert perf["fps"] == pytest.approx(perf["fclk_mhz"] * 1e6 / perf["cycles_per_frame"])
    assert "test images" in ver["inputs"]
    est = report["estimates"]
    assert est["max_cycles"] > 0 and est["estimated_fps"] > 0 and est["total"]["LUT"] > 0
    mvaus = [r for r in report["folding"] if r["op_type"].startswith("MVAU")]
    assert mvaus and all(r["PE"] >= 1 and r["SIMD"] >= 1 and r["cycles"] > 0 for r in mvaus)
    assert report["bitfile"]["path"] is None  # no Vivado here (and these builds stop at rtlsim)
    assert report["part"] == "xc7z020clg400-1" and report["clock_ns"] == 10.0
    # every dataflow node became our RTL op, its HDL where FINN's IP steps package it
    nodes = report["rtl"]["finn_nodes"]
    assert nodes and all(op.endswith("_bnn") for op in nodes.values()), nodes
    assert all((Path(report["rtl"]["node_hdl"]) / n / f"{n}.sv").is_file() for n in nodes)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_tfc_every_method(tmp_path: Path, build_models, method: str) -> None:
    out = tmp_path / "b"
    rc, report = run_build("--model", build_models["tfc", method], "--out", out,
                           "--board", "Pynq-Z2", "--target-fps", "100000", "--verify-samples", 10)
    assert rc == 0
    check_report(report, 10)
    for name in ("report.md", "cycles.png", "steps/13_estimates/dataflow.onnx", "rtl/accel.sv",
                 "rtl/accel.f"):
        assert (out / name).is_file(), name
    if method in ("xnor", "stochastic", "bnn_plus", "bbg"):  # per-class alpha in the last layer
        assert report["host_nodes"], "per-channel scaled logits run on the host"


def check_resources(report: dict) -> None:
    res = report["resources"]
    assert res["tool"].startswith("Yosys") and "synth_xilinx -family xc7" in res["tool"]
    assert res["LUT"] > 0 and res["FF"] > 0 and res["BRAM36"] > 0
    assert res["percent"]["LUT"] == pytest.approx(100 * res["LUT"] / 53200)
    assert res["finn_estimate"]["LUT"] == report["estimates"]["total"]["LUT"]
    assert "Vivado" in report["bitfile"]["reason"]  # the whole open flow ran; no Vivado here


@pytest.mark.yosys
def test_published_tfc_folding(tmp_path: Path, build_models) -> None:
    rc, report = run_build("--model", build_models["tfc", "bnn"], "--out", tmp_path / "b",
                           "--folding", CONFIGS / "tfc_w1a1.json", "--verify-samples", 20,
                           resources=True)  # per-unit Yosys: notebook 03's test
    assert rc == 0
    assert report["verification"]["rtlsim"]["mismatches"] == 0
    # published folding: 64 cycles per frame (1.56 M FPS), the accelerator at full flow (the
    # FIFO sizing's run, below); on the board the input DMA's 64 bits per cycle bring the 16
    # beats of 49 8-bit pixels in 98 cycles, the rate rtlsim measures with the input so paced
    perf = report["performance"]
    assert perf["input_bits_per_cycle"] == 64 and perf["input_cycles_per_frame"] == 98
    assert 98 <= perf["cycles_per_frame"] <= 98 * 1.05 and perf["fps"] >= 0.95e6
    check_resources(report)
    fold = {r["name"]: (r.get("PE"), r.get("SIMD")) for r in report["folding"]}
    assert [fold[f"MVAU_hls_{i}"] for i in range(4)] == [(16, 49), (8, 8), (8, 8), (10, 8)]
    assert report["estimates"]["max_cycles"] == 64
    assert report["estimates"]["estimated_fps"] == pytest.approx(1.5625e6)
    sizing = report["rtl"]["fifo_sizing"]  # FIFOs sized by simulation, the rate confirmed
    assert sizing["efficiency"] >= 0.95 and sizing["ideal_cycles"] == 64
    assert sizing["cycles_per_frame"] <= 64 * 1.05
    assert [f["name"] for f in sizing["fifos"]] == [f["name"] for f in report["rtl"]["fifos"]]
    assert {f["name"] for f in sizing["fifos"]} == {
        f"fifo_{n}" for n in report["rtl"]["finn_nodes"]} - {"fifo_Thresholding_rtl_0"}
    assert "FIFOs sized by Verilator simulation" in (tmp_path / "b/report.md").read_text()


def test_resume_after_interrupted_build(tmp_path: Path, build_models, capsys) -> None:
    out = tmp_path / "b"
    args = ["--model", build_models["tfc", "bnn"], "--out", out, "--verify-samples", 3]
    assert run_build(*args, "--to-step", "streamline")[0] == 0
    first = (out / "steps/01_qonnx_to_finn/model.onnx").stat().st_mtime_ns
    assert not (out / "steps/05_xnor_popcount").exists()
    other = ["--model", build_models["tfc", "xnor"], "--out", out, "--verify-samples", 3]
    assert run_build(*other, "--resume")[0] == 2  # a different model cannot resume this build
    assert one_line_error(capsys, "differs from the build in")
    rc, report = run_build(*args, "--resume")
    assert rc == 0
    check_report(report, 3)
    assert (out / "steps/01_qonnx_to_finn/model.onnx").stat().st_mtime_ns == first


def test_bad_folding_keeps_earlier_steps_then_resumes(tmp_path: Path, build_models,
                                                      capsys) -> None:
    out = tmp_path / "b"
    args = ["--model", build_models["tfc", "bnn"], "--out", out, "--verify-samples", 2]
    bad = tmp_path / "bad.json"
    for content, message in (({"MVAU_hls_9": {"PE": 1}}, "layer 'MVAU_hls_9' is not in"),
                             ({"MVAU_0": {"PE": 3}}, "PE=3 is illegal; it must be a positive "
                                                     "divisor of MH=64"),
                             ({"MVAU_hls_1": {"SIMD": 5}}, "SIMD=5 is illegal"),
                             ({"MVAU_hls_1": {"window_words": 3}},
                              "layer 'MVAU_hls_1' (MVAU_hls) has no option 'window_words'"),
                             ({"MVAU_hls_1": {"M": 2}}, "unknown option(s) ['M']"),
                             ({"MVAU_hls_1": {"inFIFODepths": [0]}},
                              "layer 'MVAU_hls_1': inFIFODepths=[0] must be a list of positive")):
        bad.write_text(json.dumps(content))
        assert run_build(*args, "--folding", bad, *(["--resume"] if out.exists() else []))[0] == 1
        assert one_line_error(capsys, message)
        assert (out / "steps/10_specialize/done.json").is_file()
        assert not (out / "steps/11_folding/done.json").exists()
    pinned = json.loads((CONFIGS / "tfc_w1a1.json").read_text())
    pinned["MVAU_hls_2"]["inFIFODepths"] = [7]
    good = tmp_path / "pinned.json"
    good.write_text(json.dumps(pinned))
    rc, report = run_build(*args, "--folding", good, "--resume")
    assert rc == 0 and report["estimates"]["max_cycles"] == 64
    fifos = {f["name"]: f for f in report["rtl"]["fifo_sizing"]["fifos"]}
    assert fifos["fifo_MVAU_hls_2"]["depth"] == 7 and fifos["fifo_MVAU_hls_2"]["pinned"]
    assert not fifos["fifo_MVAU_hls_1"]["pinned"]


def test_bad_inputs_give_one_clear_error(tmp_path: Path, build_models, capsys) -> None:
    import onnx
    from onnx import TensorProto, helper

    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    w = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.ones(7840, np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 784])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w])
    float_model = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph), float_model)
    dynamic = export_for_build("tfc", "sd_bnn", tmp_path / "dyn.onnx", asd="dynamic")
    cases = [
        (["--model", text], f"{text}: not an ONNX model"),
        (["--model", tmp_path / "missing.onnx"], "missing.onnx: no such file"),
        (["--model", build_models["tfc", "bnn"], "--board", "Pynq-Z9"],
         "unknown board 'Pynq-Z9': choose one of Pynq-Z1, Pynq-Z2"),
        (["--model", float_model], "node fc (MatMul): float weights; not a binarized network"),
        (["--model", dynamic], "does not deploy as XNOR-popcount + thresholds: dynamic ASD"),
        (["--model", build_models["tfc", "bnn"], "--folding", tmp_path / "nofile.json"],
         "nofile.json: no such file"),
        (["--model", build_models["tfc", "bnn"]], "holds a build (2 of 17 steps finished, "
         "the last tidy_up): give --resume to continue it, or --force to replace it"),
    ]
    out = tmp_path / "out"  # holds an earlier build, which every failure must leave intact
    assert run_build("--model", build_models["tfc", "bnn"], "--out", out, "--to-step", "tidy_up",
                     "--verify-samples", 1)[0] == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    capsys.readouterr()
    for args, message in cases:
        assert run_build(*args, "--out", out, "--verify-samples", 1)[0] == 2
        assert one_line_error(capsys, message)
        assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_zero_padding_on_bipolar_activations_is_refused(tmp_path: Path, build_models,
                                                        capsys) -> None:
    import onnx

    model = onnx.load(str(build_models["cnv", "bnn"]))
    producers = {o: n for n in model.graph.node for o in n.output}
    conv = [n for n in model.graph.node if n.op_type == "Conv"
            and producers[n.input[0]].op_type == "BipolarQuant"][0]
    pads = next(a for a in conv.attribute if a.name == "pads")
    pads.ints[:] = [1, 1, 1, 1]
    padded = tmp_path / "padded.onnx"
    onnx.save(model, padded)
    assert run_build("--model", padded, "--out", tmp_path / "b")[0] == 2
    assert not (tmp_path / "b").exists()  # refused before anything was written
    assert one_line_error(capsys, f"node {conv.name} (Conv): zero padding [1, 1, 1, 1] on "
                          "bipolar activations cannot deploy (0 is not -1 or +1); pad explicitly "
                          "with -1 before the conv")


def test_foreign_model_without_metadata_verifies_on_random_inputs(tmp_path: Path) -> None:
    model = export_for_build("tfc", "bnn", tmp_path / "foreign.onnx", dataset=None)
    rc, report = run_build("--model", model, "--out", tmp_path / "b", "--verify-samples", 4,
                           "--board", "ZCU104")
    assert rc == 0
    assert report["verification"]["inputs"].startswith("random uint8 inputs")
    assert report["part"] == "xczu7ev-ffvc1156-2-e" and report["clock_ns"] == 5.0
    assert all(s["mismatches"] == 0 for s in report["verification"]["steps"])


def test_checkpoint_is_exported_first(tmp_path: Path) -> None:
    from tests.models.test_export import synthetic_checkpoint

    ckpt = synthetic_checkpoint(tmp_path / "checkpoint.pt")
    rc, _ = run_build("--model", ckpt, "--out", tmp_path / "b", "--to-step", "tidy_up",
                      "--verify-samples", 2)
    assert rc == 0
    assert (tmp_path / "b" / "model.onnx").is_file()
    done = json.loads((tmp_path / "b/steps/02_tidy_up/done.json").read_text())
    assert done["verification"]["mismatches"] == 0


def test_verification_catches_a_changed_threshold(tmp_path: Path, build_models) -> None:
    """The check can fail: one threshold moved in one layer is reported with its sample."""
    from build_flows import checks, verify
    from qonnx.core.modelwrapper import ModelWrapper

    out = tmp_path / "b"
    assert run_build("--model", build_models["tfc", "bnn"], "--out", out, "--to-step",
                     "round_thresholds", "--verify-samples", 2)[0] == 0
    original = checks.load_onnx(build_models["tfc", "bnn"])
    inputs = verify.make_inputs(original, 10)
    ref = verify.reference(original, inputs)
    model = ModelWrapper(str(out / "steps/07_round_thresholds/model.onnx"))
    verify.verify_step("round_thresholds", model, inputs, ref, uint8_input=True)
    mt = model.get_nodes_by_op_type("MultiThreshold")[-1]
    t = model.get_initializer(mt.input[1])
    model.set_initializer(mt.input[1], t - 40)  # most neurons of the last hidden layer flip to +1
    with pytest.raises(verify.VerificationError, match=r"step round_thresholds: sample \d+: "):
        verify.verify_step("round_thresholds", model, inputs, ref, uint8_input=True)


def test_final_batchnorm_runs_on_the_host(tmp_path: Path, build_models) -> None:
    """A per-class BatchNorm after the last layer (instead of TensorNorm) cannot go into top-1:
    it stays after the accelerator, and verification covers it."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(build_models["tfc", "bnn"]))
    out = model.graph.output[0]
    rng = np.random.default_rng(0)
    params = {"bn_scale": rng.uniform(-2, 2, 10), "bn_bias": rng.uniform(-1, 1, 10),
              "bn_mean": rng.uniform(-1, 1, 10), "bn_var": rng.uniform(0.5, 2, 10)}
    for name, value in params.items():
        model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
    for node in model.graph.node:
        node.output[:] = ["pre_bn" if o == out.name else o for o in node.output]
    model.graph.node.append(helper.make_node("BatchNormalization", ["pre_bn", *params], [out.name],
                                             name="FinalBN", epsilon=1e-5))
    path = tmp_path / "final_bn.onnx"
    onnx.save(model, path)
    rc, report = run_build("--model", path, "--out", tmp_path / "b", "--verify-samples", 10,
                           "--to-step", "deploy")
    assert rc == 0
    check_report(report, 10)
    assert report["host_nodes"]
    assert all("logits" in s["kind"] for s in report["verification"]["steps"])
    # the deployment driver runs that tail on the host, in numpy: same classes as the model
    from build_flows import checks, verify
    from build_flows.deploy.driver import Accelerator

    acc = Accelerator.simulation(tmp_path / "b" / "deploy", batch_size=10)
    assert [n["op"] for n in acc.post][-2:] == ["Mul", "Add"]
    original = checks.infer_shapes(checks.load_onnx(path), path)
    inputs = verify.make_inputs(original, 10)
    want = np.argmax(verify.reference(original, inputs), axis=1)
    assert acc.classify(inputs.images).tolist() == want.tolist()


@pytest.mark.parametrize("method", ["bnn", "si_bnn"])
def test_explicit_padding_with_the_bit0_value_deploys(tmp_path: Path, method: str) -> None:
    """-1 padding of bipolar activations (0 for Si-BNN's {0,1}) is bit 0 of the stream: FINN's
    zero-padding unit reproduces it exactly."""
    from models.export import export_model
    from tests.build_flows.conftest import padded_net

    path = export_model(padded_net(method), (1, 28, 28), tmp_path / "padded.onnx")
    rc, report = run_build("--model", path, "--out", tmp_path / "b", "--verify-samples", 6)
    assert rc == 0
    assert any(r["op_type"].startswith("FMPadding") for r in report["folding"])
    assert all(s["mismatches"] == 0 for s in report["verification"]["steps"])
    assert report["verification"]["rtlsim"]["mismatches"] == 0  # our padding unit included


@pytest.mark.parametrize(("value", "rc", "message"), [
    (0.0, 2, "(Conv): zero padding [1, 1, 1, 1] on bipolar activations cannot deploy (0 is not "
             "-1 or +1); pad explicitly with -1 before the conv"),  # refused before the build
    (1.0, 1, "(Im2Col): padding with 1 cannot deploy")])  # found by a step
def test_padding_that_cannot_deploy_is_refused(tmp_path: Path, capsys, value: float, rc: int,
                                               message: str) -> None:
    from models.export import export_model
    from tests.build_flows.conftest import padded_net

    path = export_model(padded_net("bnn", value), (1, 28, 28), tmp_path / "padded.onnx")
    assert run_build("--model", path, "--out", tmp_path / "b", "--verify-samples", 2)[0] == rc
    assert one_line_error(capsys, message)


def brevitas_bnn_pynq(name: str, path: Path) -> Path:
    """Brevitas' own BNN-PYNQ net ``name`` (``tfc_1w1a``, ``cnv_1w1a``: random weights,
    BatchNorm statistics from random batches) exported to ``path`` with Brevitas' QONNX
    exporter, no bnnforge metadata."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    model, _ = model_with_cfg(name, pretrained=False)
    shape = (1, 1, 28, 28) if name.startswith("tfc") else (1, 3, 32, 32)
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.momentum = 1.0
    with torch.no_grad():
        model.train()(torch.rand(32, *shape[1:]))
    export_qonnx(model.eval(), torch.rand(shape), str(path))
    return path


def test_brevitas_bnn_pynq_models_build(tmp_path: Path) -> None:
    """Models from outside bnnforge: Brevitas' own TFC (its CNV is
    ``test_build_cnv.py::test_published_cnv_folding``'s), verified on random inputs."""
    path = brevitas_bnn_pynq("tfc_1w1a", tmp_path / "tfc_1w1a.onnx")
    rc, report = run_build("--model", path, "--out", tmp_path / "b", "--folding",
                           CONFIGS / "tfc_w1a1.json", "--verify-samples", 4)
    assert rc == 0
    assert report["verification"]["inputs"].startswith("random uint8 inputs")
    assert all(s["mismatches"] == 0 for s in report["verification"]["steps"])
    assert report["estimates"]["max_cycles"] == 64


def test_resume_is_the_same_build(tmp_path: Path, build_models, capsys) -> None:
    """What the build directory recorded (board, clock, folding contents, verification) is what
    --resume continues with; a differing option whose step has finished is refused with both
    values, one whose step has not is taken; a fresh build never replaces it without --force."""
    out = tmp_path / "b"
    folding = tmp_path / "fold.json"
    folding.write_text((CONFIGS / "tfc_w1a1.json").read_text())
    base = ["--model", build_models["tfc", "bnn"], "--out", out]
    assert run_build(*base, "--board", "ZCU104", "--folding", folding, "--verify-samples", 2,
                     "--to-step", "folding")[0] == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    changed = json.loads(folding.read_text())
    changed["MVAU_hls_1"]["PE"] = 4
    other = tmp_path / "other.json"
    other.write_text(json.dumps(changed))
    for extra, message in (
            (["--board", "Pynq-Z2"], "--board Pynq-Z2 differs from the build in"),
            (["--clock-ns", "4"], "--clock-ns 4.0 differs from the build in"),
            (["--folding", other], "its step folding has finished"),
            (["--target-fps", "500"], "--target-fps 500.0 differs"),
            (["--verify-samples", "3"], "made with 2 (its step qonnx_to_finn has finished)")):
        assert run_build(*base, "--resume", *extra)[0] == 2
        assert one_line_error(capsys, message)
    assert run_build(*base, "--to-step", "tidy_up")[0] == 2
    assert one_line_error(capsys, "holds a build (11 of 17 steps finished, the last folding)")
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    rc, report = run_build(*base, "--resume", "--to-step", "estimates")
    assert rc == 0  # the recorded options, not the defaults (Pynq-Z2, SetFolding)
    assert report["board"] == "ZCU104" and report["clock_ns"] == 5.0
    assert report["folding_source"] == str(folding) and report["estimates"]["max_cycles"] == 64
    assert all(s["samples"] == 2 for s in report["verification"]["steps"])
    # redone from the folding step on: the new folding applies and is recorded
    rc, report = run_build(*base, "--from-step", "folding", "--folding", other,
                           "--to-step", "estimates")
    assert rc == 0 and report["options"]["folding"]["contents"] == changed
    assert report["estimates"]["max_cycles"] > 64
    rc, report = run_build(*base, "--force", "--to-step", "tidy_up", "--verify-samples", 1)
    assert rc == 0 and report["board"] == "Pynq-Z2"
    assert not (out / "steps" / "11_folding").exists()


def test_unreachable_target_fps_is_said(tmp_path: Path, build_models, caplog,
                                        capsys) -> None:
    """FINN's SetFolding goes on and says so in the summary; our search refuses in one sentence
    with the best rate the part holds and what limits it."""
    args = ["--model", build_models["tfc", "bnn"], "--target-fps", "1e12", "--verify-samples",
            1, "--to-step", "estimates"]
    rc, report = run_build(*args, "--out", tmp_path / "b", "--folding-engine", "finn")
    assert rc == 0
    target = report["target"]
    assert not target["reached"] and target["how"] == "FINN's estimate"
    assert target["achieved_fps"] == report["estimates"]["estimated_fps"] < 1e12
    assert "target 1,000,000,000,000 FPS not reached" in caplog.text
    capsys.readouterr()
    assert run_build(*args, "--out", tmp_path / "c")[0] == 1
    # 784 8-bit pixels through the 64-bit input DMA: 98 cycles per frame at best
    assert one_line_error(capsys, "--target-fps 1e+12: the budget 42,560 LUT, 126 BRAM36, 220 "
                          "DSP holds at best 1,020,408 FPS (98 cycles per frame; limited by "
                          "the input stream's bandwidth)")


@pytest.mark.yosys
def test_search_fills_a_small_budget(tmp_path: Path, build_models) -> None:
    """--target-fps max within 5 % of the LUTs and 3 % of the block RAM: the folding the search
    chose fits by Yosys, runs in stitched rtlsim at the rate it predicted, and its folding file
    builds the same accelerator again."""
    out = tmp_path / "b"
    rc, report = run_build("--model", build_models["tfc", "bnn"], "--out", out, "--target-fps",
                           "max", "--budget", "lut=0.05,bram=0.03", "--verify-samples", 2,
                           resources=True)
    assert rc == 0
    fs = report["folding_search"]
    assert fs["limit"].startswith("the budget") and fs["budget"]["LUT"] == 0.05 * 53200
    last = fs["rounds"][fs["chosen_round"] - 1]
    near = any(last["model"][r] > search.CHECK_ABOVE * b for r, b in last["budget"].items() if b)
    assert near and last["yosys"]  # the search's own Yosys check runs near the budget
    assert last["yosys"]["LUT"] <= 0.05 * 53200 and last["yosys"]["BRAM36"] <= 0.03 * 140
    synth = report["resources"]  # Yosys on the final stitched design, in the resources step
    assert synth["LUT"] <= 0.05 * 53200 and synth["BRAM36"] <= 0.03 * 140
    assert synth["cost_model"]["BRAM36"] == last["model"]["BRAM36"]
    perf = report["performance"]
    assert fs["cycles"] / perf["cycles_per_frame"] >= 0.95
    assert report["target"]["fps"] == "max" and report["target"]["reached"]
    assert json.loads((out / "folding.json").read_text()) == fs["folding"]
    rc, again = run_build("--model", build_models["tfc", "bnn"], "--out", tmp_path / "c",
                          "--folding", out / "folding.json", "--verify-samples", 2)
    assert rc == 0 and again["performance"]["cycles_per_frame"] == perf["cycles_per_frame"]


def first_lut_scaled(monkeypatch, factor: float) -> list[dict]:
    """The search's Yosys check with its first LUT count scaled by ``factor`` (a cost model
    that far off); returns the list of what each check reported."""
    real = search.synthesize
    calls: list[dict] = []

    def synthesize(*args, **kwargs):
        res = dict(real(*args, **kwargs))
        if not calls:
            res["LUT"] *= factor
        calls.append(res)
        return res

    monkeypatch.setattr(search, "synthesize", synthesize)
    return calls


#: the LUT budget of the search's round tests on the small MLP (2 % of a Zynq-7020's LUTs)
SMALL_LUT = 0.02 * 53200


@pytest.mark.yosys
def test_search_backs_off_when_yosys_finds_the_budget_exceeded(tmp_path: Path, small_mlp: Path,
                                                               monkeypatch, caplog) -> None:
    """Where Yosys puts the chosen folding over the budget (here its first LUT count is made
    1.6 times the real one, as a model error that large would), the search scales that budget by
    the overshoot and searches again, and says so; the next folding is checked by Yosys too."""
    calls = first_lut_scaled(monkeypatch, 1.6)
    monkeypatch.setattr(search, "BACK_OFFS", 1)  # the two rounds this test is about
    rc, report = run_build("--model", small_mlp, "--out", tmp_path / "b",
                           "--target-fps", "max", "--budget", "lut=0.02,bram=0.03",
                           "--to-step", "folding")
    assert rc == 0
    first, second = report["folding_search"]["rounds"][:2]
    assert first["over_budget"] == ["LUT"] and first["yosys"]["LUT"] > SMALL_LUT
    assert second["yosys"] == calls[1] and not second["over_budget"]
    assert second["model"]["LUT"] <= SMALL_LUT * first["model"]["LUT"] / first["yosys"]["LUT"]
    assert second["cycles"] >= first["cycles"]
    assert "backing off: Yosys puts the design over the budget in LUT" in caplog.text


@pytest.mark.yosys
def test_search_steps_up_where_yosys_finds_room(tmp_path: Path, small_mlp: Path,
                                                monkeypatch, caplog) -> None:
    """Where Yosys finds the design stopped by the budget well below it (here its first LUT
    count is made 0.6 times the real one, as a model overestimate that large would), the search
    raises that budget by the model's error and searches again; a round that Yosys then puts
    over the budget is not taken, and the folding chosen is within it by Yosys."""
    first_lut_scaled(monkeypatch, 0.6)
    monkeypatch.setattr(search, "BACK_OFFS", 1)  # the two rounds this test is about
    with caplog.at_level(logging.INFO):
        rc, report = run_build("--model", small_mlp, "--out", tmp_path / "b",
                               "--target-fps", "max", "--budget", "lut=0.02,bram=0.03",
                               "--to-step", "folding")
    assert rc == 0
    fs = report["folding_search"]
    first, second = fs["rounds"][:2]
    assert first["limit"].startswith("the budget") and not first["over_budget"]
    assert "stepping up: the cost model put this design" in caplog.text
    assert second["model"]["LUT"] > SMALL_LUT >= first["model"]["LUT"]
    chosen = fs["rounds"][fs["chosen_round"] - 1]
    assert not chosen["over_budget"] and fs["cycles"] == chosen["cycles"]
    assert fs["cycles"] == min(r["cycles"] for r in fs["rounds"] if not r["over_budget"])


def test_a_round_that_repeats_a_folding_is_not_synthesized_again(tmp_path: Path, monkeypatch,
                                                                  caplog) -> None:
    """Stepping up can raise a limit by less than the next step needs: the search then finds
    the same folding, which Yosys has already judged. The rounds stop there (a large design's
    Yosys check takes tens of minutes) and that folding stands."""
    from types import SimpleNamespace

    from build_flows import boards
    from hw import fold

    model_lut = 0.05 * 53200 * 0.99  # stopped at the budget, 30 % above what Yosys finds
    result = fold.Result({"MVAU_hls_0": {"PE": 4, "SIMD": 8, "ram_style": "block"}}, 100,
                         "MVAU_hls_0", {"LUT": model_lut, "FF": 0.0, "BRAM36": 1.0, "DSP": 0.0},
                         False, "the budget: ...", 5, bound_by="LUT")
    calls = []
    monkeypatch.setattr(search, "design_of", lambda *a, **k: None)
    monkeypatch.setattr(search.fold, "search", lambda design, target: result)
    monkeypatch.setattr(search.folding, "apply", lambda model, config, source: model)
    monkeypatch.setattr(search, "synthesize", lambda *a: calls.append(1) or
                        {"LUT": model_lut / 1.3, "FF": 0.0, "BRAM36": 1.0, "DSP": 0.0})
    cfg = SimpleNamespace(board=boards.get_board("Pynq-Z2"), budget={"LUT": 0.05},
                          target_fps="max", clock_ns=10.0, out=tmp_path)
    with caplog.at_level(logging.INFO):
        _, record = search.fold_graph(object(), cfg)
    assert len(calls) == 1 and len(record["rounds"]) == 1 and record["chosen_round"] == 1
    assert "stepping up" in caplog.text
    assert "folding search round 2: the folding of round 1 again; stopping" in caplog.text


def test_interrupted_build_says_how_to_resume(tmp_path: Path, build_models) -> None:
    """SIGTERM during a step: one line naming the last finished step, exit 143, finished steps
    kept; --resume goes on from there."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "b"
    model = build_models["tfc", "bnn"]
    proc = subprocess.Popen([sys.executable, str(REPO / "build_flows" / "build.py"), "--model",
                             str(model), "--out", str(out), "--verify-samples", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "steps" / "02_tidy_up" / "done.json").is_file() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    line = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert len(line) == 1 and line[0].startswith("interrupted (SIGTERM): steps up to ")
    assert f"--out {out} --resume" in line[0]
    done = [d.name for d in sorted((out / "steps").iterdir()) if (d / "done.json").is_file()]
    assert done and done[0] == "01_qonnx_to_finn"
    rc, report = run_build("--model", model, "--out", out, "--resume", "--to-step", "estimates")
    assert rc == 0 and len(report["steps"]) == 13
