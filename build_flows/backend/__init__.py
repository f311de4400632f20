"""Our RTL behind FINN: every FINN dataflow node as one of our units (``hw/``), as a FINN custom op,
and in Verilator, node by node and stitched.

* :mod:`~build_flows.backend.mapping`: the one table from FINN hardware layers to units,
  :data:`~build_flows.backend.mapping.NODE_TYPES`;
* :mod:`~build_flows.backend.elem`: how tensor values travel on the streams, exact comparison;
* :mod:`~build_flows.backend.attrs`: our own options of FINN layers (plain ONNX attributes);
* :mod:`~build_flows.backend.matrix`: a binary-weight MVAU node as our matrix unit;
* :mod:`~build_flows.backend.ops`: ``<Op>_bnn`` FINN ops with our RTL backend, made from the
  table, the :class:`~build_flows.backend.ops.UseBnnRTL` swap, per-node HDL;
* :mod:`~build_flows.backend.nodesim`: node-level rtlsim against FINN's execution;
* :mod:`~build_flows.backend.accel`: the stitched accelerator: build (once), load, simulate.

Adding a node type (as qonnx's guide does for transformations):

1. write the RTL, ``hw/rtl/<module>.sv``: one unit per file (with its submodules), ports
   ``clk, rst_n, in_tdata, in_tvalid, in_tready, out_tdata, out_tvalid, out_tready``; list it
   in ``hw/filelists/units.f``;
2. add its constructor (parameters, memory contents, beat widths) and its numpy model to
   ``hw/units.py``, and test one against the other in ``tests/hw/test_units.py`` over several
   parameter sets, with random valid gaps and ready back-pressure;
3. add one :class:`~build_flows.backend.mapping.NodeType` entry to
   :data:`~build_flows.backend.mapping.NODE_TYPES`, with the function that reads the FINN node
   into that unit beside it (and its stream order, raw-output range or wrapper offset where
   they differ from the defaults);
4. add a node-level rtlsim test (``nodesim.unit_rtlsim``) on a graph that holds the node, in
   ``tests/build_flows/test_rtl.py``.

The FINN op, the swap, node rtlsim and the stitched accelerator all read the table: nothing else
changes. Inside the backend, ``ops``, ``nodesim`` and ``accel`` import ``mapping``, which imports
``elem`` and ``matrix``; the backend imports ``hw``, FINN/qonnx and the shared ``build_flows``
modules (``checks``, ``finn_env``), never the pipeline, the deployment package or the CLI.
"""
