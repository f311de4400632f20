"""bnnforge build side: the FINN (finn-plus) dataflow flow from a QONNX file to an accelerator.

Imports FINN and ``hw``, never the training code: the QONNX file is the contract with ``models``.

Layout, and the one direction imports run in (``tests/test_imports.py`` checks it):

* ``build.py`` (the CLI), ``bench.py``, ``streamline_check.py``: commands;
* :mod:`build_flows.pipeline`: the build steps and the one list that orders them;
* :mod:`build_flows.deploy`: the deployment package and the driver shipped in it;
* :mod:`build_flows.backend`: our RTL behind FINN: the node-type table, FINN custom ops, node and
  stitched rtlsim;
* shared by all: ``checks`` (BuildError), ``verify``, ``reports``, ``boards``, ``finn_env``.

commands -> pipeline -> deploy -> backend -> ``hw``; the shared modules import none of the
others. Call :func:`build_flows.finn_env.prepare` before importing ``finn``.
"""
