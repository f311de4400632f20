"""Node-level rtlsim: our units (Verilator) against FINN's Python execution of every node of
folded TFC and CNV graphs, with back-pressure, and the matrix unit's full-flow cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.build_flows.conftest import run_build

pytestmark = [pytest.mark.finn, pytest.mark.verilator]

CONFIGS = Path(__file__).resolve().parents[2] / "build_flows" / "configs"


def folded(tmp_path: Path, model: Path, config: str | None):
    """The folded dataflow graph of ``model`` (a folding file of build_flows/configs, or None
    for FINN's SetFolding at the default rate)."""
    from build_flows import finn_env

    finn_env.prepare()
    from qonnx.core.modelwrapper import ModelWrapper

    out = tmp_path / "b"
    fold = ["--folding", CONFIGS / config] if config else []
    assert run_build("--model", model, "--out", out, *fold,
                     "--to-step", "minimize_bit_width", "--verify-samples", 1)[0] == 0
    return ModelWrapper(str(out / "steps/12_minimize_bit_width/dataflow.onnx"))


def with_window_words(df):
    """``df`` with every standard sliding window at a legal ``window_words`` > 1, varied."""
    from build_flows.pipeline import folding
    from hw import units
    from qonnx.custom_op.registry import getCustomOp

    words = {}
    for i, node in enumerate(df.get_nodes_by_op_type("ConvolutionInputGenerator_rtl")):
        inst = getCustomOp(node)
        if inst.get_nodeattr("depthwise"):
            continue
        cf = inst.get_nodeattr("IFMChannels") // inst.get_nodeattr("SIMD")
        legal = units.swg_words(tuple(inst.get_nodeattr("ConvKernelDim")), cf)
        words[node.name] = {"window_words": legal[1 + i % (len(legal) - 1)]}
    assert len(words) == 6 and {w["window_words"] for w in words.values()} != {1}
    return folding.apply(df, words)


def check_window_estimates(df, work: Path) -> None:
    """FINN's cycle estimate of each sliding window several words per beat (ours: FINN's own
    knows one) against our unit's measured cycles for one frame at full flow: within 5 %, or
    on small maps within the formula's buffer fill (FINN's own at one word per beat would be
    M times too many); at one word per beat FINN's own estimate stands."""
    from build_flows.backend import mapping
    from build_flows.backend import nodesim as rtl
    from build_flows.backend.attrs import set_own_attr
    from qonnx.custom_op.registry import getCustomOp

    checked = 0
    for i, node in enumerate(df.get_nodes_by_op_type("ConvolutionInputGenerator_rtl")):
        est = mapping.exp_cycles(node)
        if est is None:
            continue
        res = rtl.unit_rtlsim(df, node, 1, work / f"{node.name}_full", seed=i)
        assert res["mismatches"] == 0, (node.name, res["first_mismatch"])
        inst = getCustomOp(node)
        (_, ifm_w), (k_h, k_w) = inst.get_nodeattr("IFMDim"), inst.get_nodeattr("ConvKernelDim")
        fill = ((k_h - 1) * ifm_w + k_w) * inst.get_nodeattr("IFMChannels") // \
            inst.get_nodeattr("SIMD")  # the formula's buffer fill, what small maps differ by
        assert abs(est - res["cycles"]) <= max(0.05 * res["cycles"], fill), \
            (node.name, est, res["cycles"], fill)
        checked += 1
    assert checked == 6
    one = df.get_nodes_by_op_type("ConvolutionInputGenerator_rtl")[0]
    set_own_attr(one, "window_words", 1)
    assert mapping.exp_cycles(one) is None


@pytest.mark.parametrize("method", ["bnn", "si_bnn", "bnn_plus"])
def test_tfc_matrix_layers_match_finn(tmp_path: Path, build_models, method: str) -> None:
    """bnn/bnn_plus: four XNOR layers; si_bnn: {0,1} activations, so integer-input layers."""
    from build_flows.backend import nodesim as rtl

    df = folded(tmp_path, build_models["tfc", method], "tfc_w1a1.json")
    nodes = df.get_nodes_by_op_type("MVAU_hls")
    assert len(nodes) == 4
    kinds = []
    for i, node in enumerate(nodes):
        res = rtl.node_rtlsim(df, node, 4, tmp_path / node.name, seed=i, p_valid=0.7,
                              p_ready=0.6)
        assert res["mismatches"] == 0, res["first_mismatch"]
        kinds.append(res["params"]["XNOR"])
    assert kinds == ([0, 0, 0, 0] if method == "si_bnn" else [1, 1, 1, 1])
    # full flow: the first layer (16 x 49 folding) takes its 64 cycles per frame
    res = rtl.node_rtlsim(df, nodes[0], 20, tmp_path / "flow")
    assert res["mismatches"] == 0 and 64 <= res["cycles_per_frame"] <= 64 * 1.05


@pytest.mark.slow
def test_cnv_matrix_layers_match_finn(tmp_path: Path, build_models) -> None:
    """The 8-bit first layer and the eight XNOR layers of CNV."""
    from build_flows.backend import nodesim as rtl

    df = folded(tmp_path, build_models["cnv", "bnn"], "cnv_w1a1_1ch.json")
    nodes = df.get_nodes_by_op_type("MVAU_hls")
    assert len(nodes) == 9
    for i, node in enumerate(nodes):
        res = rtl.node_rtlsim(df, node, 1, tmp_path / node.name, seed=i, p_valid=0.8,
                              p_ready=0.8)
        assert res["mismatches"] == 0, res["first_mismatch"]
        assert res["params"]["XNOR"] == (0 if i == 0 else 1)
        if i == 0:
            assert res["params"]["IN_W"] == 8 and res["params"]["IN_SIGNED"] == 1


@pytest.mark.parametrize("net", ["tfc", pytest.param("cnv", marks=pytest.mark.slow)])
def test_every_other_node_type_matches_finn(tmp_path: Path, build_models, net: str) -> None:
    """Thresholding and label select (TFC); the 8-bit input quantizer, sliding windows (standard,
    several window words per beat, and depthwise), max pooling and label select (CNV): our unit
    against FINN's execution of the node on random frames, with back-pressure; and FINN's cycle
    estimate of the windows several words per beat (:func:`check_window_estimates`)."""
    from build_flows.backend import nodesim as rtl

    config = "tfc_w1a1.json" if net == "tfc" else "cnv_w1a1_1ch.json"
    df = folded(tmp_path, build_models[net, "bnn"], config)
    if net == "cnv":  # standard windows several words per beat (window_words), varied
        df = with_window_words(df)
    seen = set()
    for i, node in enumerate(df.graph.node):
        if node.op_type.startswith("MVAU"):
            continue
        res = rtl.unit_rtlsim(df, node, 2, tmp_path / node.name, seed=i, p_valid=0.7,
                              p_ready=0.6)
        assert res["mismatches"] == 0, (node.name, res["first_mismatch"])
        seen.add(res["module"])
    assert seen == ({"thresholding", "label_select"} if net == "tfc" else
                    {"thresholding", "swg", "pool", "label_select"})
    if net == "cnv":
        check_window_estimates(df, tmp_path)
