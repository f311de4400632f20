"""The FINN steps of the build, each a plain ``(model, cfg) -> model``: from QONNX to a folded
dataflow graph of FINN hardware layers, with FINN's estimates.

``qonnx_to_finn`` -> ``tidy_up`` -> ``pre_post`` (uint8 input scaling, top-1 output) ->
``streamline`` -> ``xnor_popcount`` -> ``residual`` -> ``round_thresholds`` -> ``hw_layers`` ->
``dataflow_partition`` -> ``specialize`` -> ``folding`` -> ``minimize_bit_width`` ->
``estimates``; the order lives in :data:`build_flows.pipeline.STEPS`. Steps only call
finn-plus/qonnx transformations and ours (:mod:`build_flows.pipeline.transforms`); nothing here
needs Vivado.
"""

from __future__ import annotations

import logging

import numpy as np

from build_flows import checks, finn_env, reports
from build_flows.backend import mapping
from build_flows.pipeline import folding, residual_graph, search, transforms
from build_flows.pipeline.config import BuildConfig
from build_flows.pipeline.graph import apply_to_dataflow, dataflow_model, tidy

log = logging.getLogger(__name__)

finn_env.prepare()

from onnx import TensorProto, helper  # noqa: E402
from qonnx.core.datatype import DataType  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount  # noqa: E402
from qonnx.transformation.general import RemoveUnusedTensors  # noqa: E402
from qonnx.transformation.infer_data_layouts import InferDataLayouts  # noqa: E402
from qonnx.transformation.insert_topk import InsertTopK  # noqa: E402
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul  # noqa: E402
from qonnx.util.cleanup import cleanup_model  # noqa: E402


def step_qonnx_to_finn(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """qonnx cleanup, then ConvertQONNXtoFINN (Quant/BipolarQuant -> MultiThreshold + scales)."""
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN

    model = transforms.split_bipolar_act_scales(cleanup_model(model))
    return model.transform(ConvertQONNXtoFINN())


def step_tidy_up(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """Shape/datatype inference, constant folding, readable names."""
    return tidy(model)


def step_pre_post(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """uint8 input (``Div 255`` in front, as the export contract says) and top-1 at the end.

    A per-channel affine tail (a final BatchNorm: Mul/Add with a vector) cannot be absorbed into
    the top-1 unit; it stays after the accelerator as host post-processing (recorded in
    ``cfg.host_postproc``) and top-1 is then taken on the host too.
    """
    iname = model.graph.input[0].name
    new_in = helper.make_tensor_value_info(iname + "_uint8", TensorProto.FLOAT,
                                           model.get_tensor_shape(iname))
    const = iname + "_div255"
    model.set_initializer(const, np.asarray(255.0, dtype=np.float32))
    div = helper.make_node("Div", [new_in.name, const], [iname], name="Preproc_Div255")
    model.graph.input.remove(model.graph.input[0])
    model.graph.input.insert(0, new_in)
    model.graph.node.insert(0, div)
    model.set_tensor_datatype(new_in.name, DataType["UINT8"])
    model = tidy(model)
    tail = checks.per_channel_tail(model)
    if tail:
        cfg.host_postproc = tail
        log.info("per-channel affine after the last layer: it runs on the host after the "
                 "accelerator, with top-1")
        return model
    return tidy(model.transform(InsertTopK(k=1)))


def step_streamline(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """FINN's Streamline, conv lowering to MatMul with NHWC layouts, transposes absorbed."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds

    model = model.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(Streamline())
    if model.get_nodes_by_op_type("Conv"):
        model = model.transform(LowerConvsToMatMul())
        model = tidy(transforms.fold_pads_into_im2col(model))
        model = model.transform(MakeMaxPoolNHWC())
        model = model.transform(absorb.AbsorbTransposeIntoMultiThreshold())
        model = model.transform(MakeMaxPoolNHWC())
        model = model.transform(absorb.AbsorbConsecutiveTransposes())
    # Integer thresholds before the XNOR conversion rewrites them as (T + K) / 2: in float32 that
    # rounds a threshold within ~1e-5 of an integer onto it (seen on CNV), ceil(T) first is exact.
    return tidy(model.transform(RoundAndClipThresholds()))


def step_xnor_popcount(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """BIPOLAR x BIPOLAR MatMuls become XNOR-popcount; streamline the resulting affine ops again."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline import Streamline

    model = model.transform(ConvertBipolarMatMulToXnorPopcount())
    for node in model.get_nodes_by_op_type("MultiThreshold"):  # (T + K) / 2 may be x.5 now;
        model.set_tensor_datatype(node.input[1], DataType["FLOAT32"])  # round_thresholds rounds
    model = transforms.binary_pad_values(model)
    model = tidy(transforms.factor_out_threshold_scales(model))
    model = model.transform(Streamline())
    model = model.transform(absorb.AbsorbScalarMulAddIntoTopK())
    model = model.transform(InferDataLayouts())
    model = tidy(model.transform(RemoveUnusedTensors()))
    if not residual_graph.joins(model):  # residual graphs: checked after the residual step
        checks.check_streamlined(model)
    return model


def step_residual(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """Residual adds with their quantizers, shortcut convs, global pools and wide uniform
    quantizers to integer forms, NHWC throughout (:mod:`build_flows.pipeline.residual`); a
    graph without residual adds passes unchanged."""
    if not residual_graph.joins(model):
        return model
    model = tidy(residual_graph.lower(model))
    model = model.transform(InferDataLayouts())
    checks.check_streamlined(model)
    return model


def step_round_thresholds(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """Thresholds on integer inputs become integers (ceil), clipped to the input range."""
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds

    return tidy(model.transform(RoundAndClipThresholds()))


def step_hw_layers(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """Matrix-vector units (XNOR-popcount for binary, integer for the first layer), thresholds,
    sliding windows, pooling, label select."""
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import \
        InferBinaryMatrixVectorActivation
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.label_select import InferLabelSelectLayer
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import \
        InferQuantizedMatrixVectorActivation
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer
    from finn.transformation.move_reshape import RemoveCNVtoFCFlatten
    import finn.transformation.streamline.absorb as absorb

    model = model.transform(InferBinaryMatrixVectorActivation())
    model = model.transform(InferQuantizedMatrixVectorActivation())
    model = model.transform(absorb.AbsorbConsecutiveTransposes())
    model = model.transform(InferThresholdingLayer())
    model = model.transform(InferLabelSelectLayer())
    model = model.transform(InferPool())
    model = model.transform(InferConvInpGen())
    model = model.transform(RemoveCNVtoFCFlatten())
    model = model.transform(InferDataLayouts())
    model = model.transform(absorb.AbsorbConsecutiveTransposes())  # around standalone thresholds
    if residual_graph.forks(model):  # a residual net's shortcut streams
        from finn.transformation.fpgadataflow.convert_to_hw.duplicate_streams import \
            InferDuplicateStreamsLayer
        model = tidy(model).transform(InferDuplicateStreamsLayer())
    return tidy(model)


def step_dataflow_partition(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """Move the HW layers into one StreamingDataflowPartition; refuse anything left outside it."""
    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition

    cfg.host_nodes = checks.check_all_hw(model, allowed_host_tail=bool(cfg.host_postproc))
    parent = model.transform(CreateDataflowPartition(
        partition_model_dir=str(cfg.work_dir / "dataflow_partition")))
    return parent


def step_specialize(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """Pick the HLS/RTL implementation of each HW layer for the board's part."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    return apply_to_dataflow(model, lambda m: m.transform(SpecializeLayers(cfg.board.part)),
                             cfg.work_dir)


def step_folding(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """PE/SIMD per layer: the folding file if given, else our search for ``target_fps`` within
    the budget (:mod:`~build_flows.pipeline.search`), or FINN's SetFolding for it."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    def fold(m: ModelWrapper) -> ModelWrapper:
        if cfg.folding_config is not None:
            return folding.apply(m, cfg.folding_config)
        if cfg.folding_engine == "bnnforge":
            m, cfg.hw["search"] = search.fold_graph(m, cfg)
            return m
        fps = cfg.target_fps or folding.DEFAULT_FPS
        cycles = max(int(1e9 / cfg.clock_ns / fps), 1)
        m = m.transform(SetFolding(target_cycles_per_frame=cycles,
                                   mvau_wwidth_max=cfg.mvau_wwidth_max, two_pass_relaxation=True))
        return folding.fold_own_layers(m, cycles)
    return apply_to_dataflow(model, fold, cfg.work_dir)


def step_minimize_bit_width(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """Smallest weight and accumulator widths that hold every value (thresholds adjusted)."""
    from finn.transformation.fpgadataflow.minimize_accumulator_width import \
        MinimizeAccumulatorWidth
    from finn.transformation.fpgadataflow.minimize_weight_bit_width import MinimizeWeightBitWidth

    return apply_to_dataflow(model, lambda m: m.transform(MinimizeWeightBitWidth())
                             .transform(MinimizeAccumulatorWidth()), cfg.work_dir)


def step_estimates(model: ModelWrapper, cfg: BuildConfig) -> ModelWrapper:
    """FINN's analytical per-layer cycles and resources, and the network's throughput (the
    cycles of a window unit with several words per beat by FINN's formula made for it)."""
    cfg.estimates = reports.estimates(dataflow_model(model), cfg.clock_ns, cfg.board.part,
                                      mapping.exp_cycles)
    return model
