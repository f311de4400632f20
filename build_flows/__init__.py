"""bnnforge build side: the FINN (finn-plus) dataflow flow from a QONNX file to an accelerator.

Imports FINN and ``hw``, never the training code: the QONNX file is the contract with ``models``.
Call :func:`build_flows.finn_env.prepare` before importing ``finn``.
"""
