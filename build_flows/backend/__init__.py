"""Our RTL behind FINN: every FINN dataflow node as one of our units (``hw/``), as a FINN custom op,
and in Verilator, node by node and stitched.

* :mod:`~build_flows.backend.mapping`: the one table from FINN hardware layers to units
  (:data:`~build_flows.backend.mapping.NODE_TYPES`); its docstring lists the steps for adding a
  node type;
* :mod:`~build_flows.backend.elem`: how tensor values travel on the streams, exact comparison;
* :mod:`~build_flows.backend.matrix`: a binary-weight MVAU node as our matrix unit;
* :mod:`~build_flows.backend.ops`: ``<Op>_bnn`` FINN ops with our RTL backend, the
  :class:`~build_flows.backend.ops.UseBnnRTL` swap, per-node HDL;
* :mod:`~build_flows.backend.nodesim`: node-level rtlsim against FINN's execution;
* :mod:`~build_flows.backend.accel`: the stitched accelerator: build, load, simulate.

The backend imports ``hw``, FINN/qonnx and the shared ``build_flows`` modules (``checks``,
``finn_env``), never the pipeline or the CLI. Inside it, imports run
elem/matrix -> mapping -> ops, nodesim, accel.
"""
