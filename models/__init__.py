"""bnnforge training side: binarization methods, nets, data, training and QONNX export.

Imports torch and Brevitas, never FINN; the exported QONNX file is the contract with
``build_flows``.
"""

import logging


def setup_logging(level: int = logging.INFO) -> None:
    """CLI logging: project messages at ``level``, third-party libraries at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("models", "build_flows", "hw"):
        logging.getLogger(name).setLevel(level)
