"""The one place that prepares the environment finn-plus 1.6.1 expects before it is imported.

finn-plus reads ``FINN_BUILD_DIR`` (an absolute directory for generated files) and
``FINN_SETTINGS`` when its modules are imported; without them transformations that create build
directories fail. :func:`prepare` sets both (keeping values the user set) and is called by every
``build_flows`` module before it imports ``finn``. It imports nothing of ``build_flows``: our RTL
ops register themselves when :mod:`build_flows.backend.ops` is imported (the pipeline does).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def prepare(build_dir: str | Path | None = None) -> Path:
    """Set ``FINN_BUILD_DIR``/``FINN_SETTINGS`` if unset; return the build directory."""
    if build_dir is None:
        build_dir = os.environ.get("FINN_BUILD_DIR") or Path(tempfile.gettempdir()) / "bnnforge_finn"
    build_dir = Path(build_dir).absolute()
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    os.environ.setdefault("FINN_SETTINGS", str(build_dir / "settings.yaml"))
    return build_dir
