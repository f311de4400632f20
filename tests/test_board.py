"""On a PYNQ board: a deployment package's scripts on the real accelerator.

Run there as ``BNNFORGE_DEPLOY=~/bnnforge/deploy python -m pytest tests/test_board.py``; this
module imports nothing but the standard library and pytest, so it runs on the board's Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.board
def test_validate_on_the_board() -> None:
    """On a PYNQ board: ``BNNFORGE_DEPLOY`` names a deployment package with its bitfile; its
    self-test must pass bit for bit, and with ``BNNFORGE_DATASET`` (an images file, labels next
    to it as for IDX) the accuracy is reported."""
    deploy = os.environ.get("BNNFORGE_DEPLOY")
    if not deploy:
        pytest.fail("set BNNFORGE_DEPLOY to a deployment package with its bitfile")
    proc = subprocess.run([sys.executable, "validate.py", "--self-test"], cwd=deploy,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((Path(deploy) / "validate.json").read_text())["mismatches"] == 0
    data = os.environ.get("BNNFORGE_DATASET")
    if data:
        labels = data.replace("images-idx3", "labels-idx1")
        proc = subprocess.run([sys.executable, "validate.py", "--images", data, "--labels",
                               labels], cwd=deploy, capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr
