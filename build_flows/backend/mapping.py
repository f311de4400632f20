"""The one table from FINN's hardware layers to our units: :data:`NODE_TYPES`.

Each entry says, for one FINN hardware layer (generic, ``_hls``/``_rtl`` or our ``_bnn``):

* ``layer``: FINN's layer class, whose attributes, shapes, stream widths, estimates and Python
  execution our FINN op (:mod:`build_flows.backend.ops`) inherits;
* ``unit``: ``(model, node, elem_in) -> (Unit, elem_out)``, the :class:`hw.units.Unit` (module,
  parameters, memory contents) for the node fed with ``elem_in`` elements, and the encoding of
  its output elements (:mod:`build_flows.backend.elem`). The encoding is derived from the
  producer, not from FINN's annotation: FINN may call an XNOR popcount INT7 while our unit sends
  it as 7 unsigned bits;
* ``stream_order``: where the unit streams a tensor in another order than FINN's (k, c), the
  ``(KK, fold)`` reorderings on its input and output side (the encoder/decoder's part that is
  specific to the node);
* ``raw_range``: for outputs that are raw accumulators, the values they reach, so that the swap
  can widen FINN's datatype annotation where it is too narrow;
* ``port_offset``: a constant the node's FINN-interface wrapper adds to each output element
  (FINN's ``ActVal`` where the unit leaves it out);
* ``swap_attrs``: FINN attributes our op sets when it is swapped in;
* ``op_methods``: overrides of FINN's layer methods on our op;
* ``exp_cycles``: ``node -> cycles | None``, the cycles per frame FINN's estimate should take
  where our own folding options (:mod:`build_flows.backend.attrs`) change them (None: FINN's
  ``get_exp_cycles`` stands).

Adding a node type is one entry here plus its RTL and tests: the steps are in
:mod:`build_flows.backend`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from build_flows import finn_env
from build_flows.backend.addrequant import AddRequant
from build_flows.backend.attrs import own_attr
from build_flows.backend.elem import Elem
from build_flows.backend.matrix import matrix_unit
from build_flows.checks import BuildError
from hw import units

finn_env.prepare()

from finn.custom_op.fpgadataflow.convolutioninputgenerator import \
    ConvolutionInputGenerator  # noqa: E402
from finn.custom_op.fpgadataflow.duplicatestreams import DuplicateStreams  # noqa: E402
from finn.custom_op.fpgadataflow.fmpadding import FMPadding  # noqa: E402
from finn.custom_op.fpgadataflow.globalaccpool import GlobalAccPool  # noqa: E402
from finn.custom_op.fpgadataflow.labelselect import LabelSelect  # noqa: E402
from finn.custom_op.fpgadataflow.matrixvectoractivation import MVAU  # noqa: E402
from finn.custom_op.fpgadataflow.pool import Pool  # noqa: E402
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend  # noqa: E402
from finn.custom_op.fpgadataflow.thresholding import Thresholding  # noqa: E402
from qonnx.core.datatype import DataType  # noqa: E402
from qonnx.custom_op.registry import getCustomOp  # noqa: E402

Reorder = tuple[int, int]  # (KK, fold) of a (k, c) <-> (cf, k, fold) reordering
UnitFn = Callable[[Any, Any, Elem], tuple[units.Unit, Elem]]


def natural_order(unit: units.Unit) -> tuple[Reorder | None, Reorder | None]:
    """The unit streams tensors in FINN's order on both sides."""
    return None, None


@dataclass(frozen=True)
class NodeType:
    """How one FINN hardware layer maps to our RTL (see the module docstring)."""

    layer: type
    unit: UnitFn
    stream_order: Callable[[units.Unit], tuple[Reorder | None, Reorder | None]] = natural_order
    raw_range: Callable[[Any, Any], tuple[int, int] | None] | None = None
    port_offset: Callable[[Any, Any], int] | None = None
    swap_attrs: dict[str, Any] = field(default_factory=dict)
    op_methods: dict[str, Callable[..., Any]] = field(default_factory=dict)
    #: input streams; a unit fn of a two-input node takes the second input's encoding too
    inputs: int = 1
    exp_cycles: Callable[[Any], int | None] | None = None


def _attr(inst: Any, name: str) -> Any:
    return inst.get_nodeattr(name)


def mvau_unit(model: Any, node: Any, elem_in: Elem) -> tuple[units.Unit, Elem]:
    """MVAU with binary weights -> ``mvtu`` (:mod:`build_flows.backend.matrix`): 1-bit outputs
    with thresholds, else raw accumulators (unsigned popcounts in XNOR mode)."""
    mu = matrix_unit(model, node)
    p = mu.params
    out = Elem(1) if p["ACTIVATION"] else Elem(p["ACC_W"], not p["XNOR"])
    return mu.unit(), out


def mvau_raw_range(model: Any, node: Any) -> tuple[int, int] | None:
    """Raw accumulators of an MVAU without activation reach [0, MW] or [-MW m, MW m]."""
    if getCustomOp(node).get_nodeattr("noActivation") != 1:
        return None
    return matrix_unit(model, node).acc_range()


def mvau_port_offset(inst: Any, odt: Any) -> int:
    """Thresholded (non-bipolar) outputs get FINN's ActVal in the wrapper: FINN = unit + ActVal."""
    if inst.get_nodeattr("noActivation") == 0 and odt.name != "BIPOLAR":
        return int(inst.get_nodeattr("ActVal"))
    return 0


def thresholding_unit(model: Any, node: Any, elem_in: Elem) -> tuple[units.Unit, Elem]:
    """Thresholding -> ``thresholding``: output = #{t : x >= t} + ActVal (bipolar outputs count
    0/1 and travel as bits)."""
    inst = getCustomOp(node)
    idt = DataType[_attr(inst, "inputDataType")]
    odt = DataType[_attr(inst, "outputDataType")]
    c = _attr(inst, "NumChannels")
    t = np.asarray(model.get_initializer(node.input[1]))
    t = np.broadcast_to(t, (c, t.shape[-1]))
    if not np.array_equal(t, np.ceil(t)):
        raise BuildError(f"node {node.name}: non-integer thresholds on integer inputs; run "
                         "round_thresholds first")
    act = int(_attr(inst, "ActVal"))
    if odt.name == "BIPOLAR":  # -1/+1 travel as bits: count 0/1
        bias, out = 0, Elem(1, False, True)
    else:
        bias, out = act, Elem(odt.bitwidth(), odt.signed())
    return units.thresholding(node.name, t.astype(np.int64), _attr(inst, "PE"), idt.bitwidth(),
                              idt.signed(), out.width, bias), out


def swg_unit(model: Any, node: Any, elem_in: Elem) -> tuple[units.Unit, Elem]:
    """ConvolutionInputGenerator (standard or depthwise, no dilation) -> ``swg``."""
    inst = getCustomOp(node)
    if list(_attr(inst, "Dilation")) != [1, 1]:
        raise BuildError(f"node {node.name}: dilation {_attr(inst, 'Dilation')} is not supported "
                         "by our sliding-window unit")
    ifm, k, s = (tuple(_attr(inst, a)) for a in ("IFMDim", "ConvKernelDim", "Stride"))
    names = [a.name for a in node.attribute]
    style = _attr(inst, "ram_style") if "ram_style" in names else "auto"
    ch, simd, dw = _attr(inst, "IFMChannels"), _attr(inst, "SIMD"), bool(_attr(inst, "depthwise"))
    words = own_attr(node, "window_words", 1)
    if "M" in names and _attr(inst, "M") != 1:
        raise BuildError(f"node {node.name}: M={_attr(inst, 'M')} (several windows per beat) "
                         "is not supported by our sliding-window unit; window_words gives a "
                         "window's words in parallel")
    try:
        unit = units.swg(node.name, ifm, ch, simd, k, s, elem_in.width, dw, style, m=words)
    except ValueError as exc:
        raise BuildError(f"node {node.name}: {exc}") from None
    return unit, elem_in


def _swg_words(op: Any) -> int:
    return own_attr(op.onnx_node, "window_words", 1)


def _swg_attr_types(op: Any) -> dict[str, Any]:
    """FINN's attributes and ours (``window_words``: window words per output beat)."""
    return {**RTLBackend.get_nodeattr_types(op), "window_words": ("i", False, 1)}


def _swg_folded_oshape(op: Any, ind: int = 0) -> tuple[int, ...]:
    """FINN's (1, OH, OW, K_H K_W C / SIMD, SIMD) with ``window_words`` M words per beat:
    (1, OH, OW, K_H K_W C / (SIMD M), SIMD M)."""
    *head, wf, simd = ConvolutionInputGenerator.get_folded_output_shape(op, ind)
    m = _swg_words(op)
    return (*head, wf // m, simd * m)


def swg_exp_cycles(node: Any) -> int | None:
    """FINN's estimate of a sliding window with ``window_words`` M > 1 words per beat (FINN's
    own knows one; None for M = 1): its default-style formula with each window row's writes
    taking M words a beat, for CF = C / SIMD,

    ``((K_H - 1) IFM_W + K_W) CF + OFM_H max(OFM_W K_W K_H CF / M, S_W IFM_W CF)``."""
    m = own_attr(node, "window_words", 1)
    if m == 1:
        return None
    inst = getCustomOp(node)
    ifm_w, s_w = _attr(inst, "IFMDim")[1], _attr(inst, "Stride")[1]
    (k_h, k_w), (ofm_h, ofm_w) = _attr(inst, "ConvKernelDim"), _attr(inst, "OFMDim")
    cf = _attr(inst, "IFMChannels") // _attr(inst, "SIMD")
    return ((k_h - 1) * ifm_w + k_w) * cf + ofm_h * max(ofm_w * k_w * k_h * cf // m,
                                                         s_w * ifm_w * cf)


def exp_cycles(node: Any) -> int | None:
    """The entry's ``exp_cycles`` for ``node`` (None: not ours, or FINN's estimate stands)."""
    op = base_op(node)
    fn = NODE_TYPES[op].exp_cycles if op else None
    return fn(node) if fn else None


def swg_order(unit: units.Unit) -> tuple[Reorder | None, Reorder | None]:
    """Depthwise windows leave channel-fold first, as the pooling unit takes them."""
    p = unit.params
    return (None, (p["K_H"] * p["K_W"], p["SIMD"])) if p["DEPTHWISE"] else (None, None)


def fmpadding_unit(model: Any, node: Any, elem_in: Elem) -> tuple[units.Unit, Elem]:
    """FMPadding -> ``fmpadding`` (bit 0 of the stream: 0, or -1 for bipolar elements)."""
    inst = getCustomOp(node)
    return units.fmpadding(node.name, tuple(_attr(inst, "ImgDim")), _attr(inst, "NumChannels"),
                           _attr(inst, "SIMD"), elem_in.width,
                           tuple(_attr(inst, "Padding"))), elem_in


def pool_unit(model: Any, node: Any, elem_in: Elem) -> tuple[units.Unit, Elem]:
    """Pool (MaxPool over windows from a depthwise sliding window) -> ``pool``."""
    inst = getCustomOp(node)
    if _attr(inst, "Function") != "MaxPool":
        raise BuildError(f"node {node.name}: Pool function {_attr(inst, 'Function')}; our pool "
                         "unit does MaxPool")
    kk = int(np.prod(_attr(inst, "KernelSize")))
    return units.pool(node.name, _attr(inst, "Channels"), _attr(inst, "PE"), kk, elem_in.width,
                      elem_in.signed), elem_in


def pool_order(unit: units.Unit) -> tuple[Reorder | None, Reorder | None]:
    """Pooling takes its windows channel-fold first, as the depthwise sliding window emits them."""
    return (unit.params["KK"], unit.params["PE"]), None


def label_select_unit(model: Any, node: Any, elem_in: Elem) -> tuple[units.Unit, Elem]:
    """LabelSelect (top-1) -> ``label_select``: the index of the first maximum."""
    inst = getCustomOp(node)
    if _attr(inst, "K") != 1:
        raise BuildError(f"node {node.name}: top-{_attr(inst, 'K')}; our label select gives top-1")
    odt = DataType[_attr(inst, "outputDataType")]
    return units.label_select(node.name, _attr(inst, "Labels"), _attr(inst, "PE"), elem_in.width,
                              elem_in.signed, odt.bitwidth()), Elem(odt.bitwidth())


def dup_unit(model: Any, node: Any, elem_in: Elem) -> tuple[units.Unit, Elem]:
    """DuplicateStreams (a fork of two) -> ``dup``: each beat to both outputs."""
    inst = getCustomOp(node)
    if _attr(inst, "NumOutputStreams") != 2:
        raise BuildError(f"node {node.name}: a fork of {_attr(inst, 'NumOutputStreams')} "
                         "streams; our dup unit makes two")
    return units.dup(node.name, _attr(inst, "PE") * elem_in.width), elem_in


def accpool_unit(model: Any, node: Any, elem_in: Elem) -> tuple[units.Unit, Elem]:
    """GlobalAccPool -> ``accpool``: per channel the sum over the map."""
    inst = getCustomOp(node)
    vecs = list(_attr(inst, "numInputVectors"))
    u = units.accpool(node.name, _attr(inst, "NumChannels"), _attr(inst, "PE"),
                      int(vecs[-1] * vecs[-2]), elem_in.width, elem_in.signed)
    return u, Elem(u.params["OUT_W"], elem_in.signed)


def requant_unit(model: Any, node: Any, elem_in: Elem,
                 elem_z: Elem | None = None) -> tuple[units.Unit, Elem]:
    """AddRequant -> ``requant`` (two inputs: fed by a ``zip`` of them, which
    :func:`build_flows.backend.accel.graph_units` puts in front)."""
    inst = getCustomOp(node)
    two = _attr(inst, "NumInputs") > 1
    lo, hi = _attr(inst, "outLo"), _attr(inst, "outHi")
    odt = DataType[_attr(inst, "outputDataType")]
    out = Elem(odt.bitwidth(), lo < 0)
    z = elem_z if two else None
    u = units.requant(node.name, inst._coef("coefA"), inst._coef("coefB"), _attr(inst, "shift"),
                      _attr(inst, "PE"), elem_in.width, elem_in.signed, out.width, lo, hi,
                      g=inst._coef("coefG") if two else None, z_w=z.width if z else 0,
                      z_signed=z.signed if z else True)
    return u, out


#: FINN hardware layer -> our RTL. The only place a node type is added.
NODE_TYPES: dict[str, NodeType] = {
    "MVAU": NodeType(MVAU, mvau_unit, raw_range=mvau_raw_range, port_offset=mvau_port_offset,
                     swap_attrs={"mem_mode": "internal_embedded"}),  # memories inside the unit
    "Thresholding": NodeType(Thresholding, thresholding_unit),
    "FMPadding": NodeType(FMPadding, fmpadding_unit),
    "ConvolutionInputGenerator": NodeType(
        ConvolutionInputGenerator, swg_unit, swg_order,
        # window_words SIMD groups a beat (FINN's parallel_window is not ours: ignored)
        op_methods={"use_parallel_window_output": lambda self: False,
                    "get_nodeattr_types": _swg_attr_types,
                    "get_folded_output_shape": _swg_folded_oshape,
                    "get_outstream_width": lambda self, ind=0:
                        self.get_instream_width() * _swg_words(self)},
        exp_cycles=swg_exp_cycles),
    "Pool": NodeType(Pool, pool_unit, pool_order),
    "LabelSelect": NodeType(LabelSelect, label_select_unit),
    "DuplicateStreams": NodeType(DuplicateStreams, dup_unit),
    "GlobalAccPool": NodeType(GlobalAccPool, accpool_unit),
    "AddRequant": NodeType(AddRequant, requant_unit, inputs=2),
}

#: the suffixes of FINN's specializations and of our ops
SUFFIXES = ("_hls", "_rtl", "_bnn")


def base_op(node: Any) -> str | None:
    """The FINN hardware layer of a dataflow node we have RTL for, else None."""
    if not node.domain.startswith("finn.custom_op.fpgadataflow"):
        return None
    op = node.op_type
    for suffix in SUFFIXES:
        op = op.removesuffix(suffix)
    return op if op in NODE_TYPES else None


def node_type(node: Any) -> NodeType:
    """The table entry for ``node``, or BuildError naming the node."""
    op = base_op(node)
    if op is None:
        raise BuildError(f"node {node.name} ({node.op_type}): no bnnforge RTL for this node type")
    return NODE_TYPES[op]


def node_unit(model: Any, node: Any, elem_in: Elem,
              more: tuple[Elem, ...] = ()) -> tuple[units.Unit, Elem]:
    """The unit for one dataflow node fed with ``elem_in`` elements (and ``more`` on its
    further inputs); its output encoding."""
    return node_type(node).unit(model, node, elem_in, *more)


def stream_reorders(node: Any, unit: units.Unit) -> tuple[Reorder | None, Reorder | None]:
    """(KK, fold) of the (k, c) -> (cf, k, fold) reordering between FINN's tensor and the unit's
    stream, on the input side and on the output side (None: same order)."""
    return node_type(node).stream_order(unit)
