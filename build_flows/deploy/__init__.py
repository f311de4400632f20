"""Deployment: the package a build writes to ``out/deploy/`` (:mod:`.package`) and what it ships:
the accelerator driver for PYNQ boards and for the Verilator simulation (:mod:`.driver`), and the
board scripts ``validate.py`` and ``throughput.py``. The shipped files import neither FINN nor
the rest of this repository (the simulation backend imports :mod:`hw` when asked for)."""
