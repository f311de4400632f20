"""``python -m models.summary RUN_DIR``: where a run's outputs are and its test accuracy."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarize(run: str | Path) -> str:
    """A few lines naming the run's files and its accuracy (from metrics.json)."""
    run = Path(run)
    metrics = json.loads((run / "metrics.json").read_text())
    cfg = metrics["config"]
    lines = [f"{cfg['net'].upper()}-W1A1 ({cfg['method']}) on {cfg['dataset']}, "
             f"{metrics['epochs_completed']} epochs, "
             f"{metrics['seconds_per_epoch']:.1f} s per epoch"]
    for name in ("checkpoint.pt", "metrics.json", "curves.png", "model.onnx"):
        path = run / name
        lines.append(f"  {path}{'' if path.exists() else '  (missing)'}")
    lines.append(f"test accuracy: {100 * metrics['test_accuracy']:.2f}%")
    parity = metrics.get("export", {}).get("parity")
    if parity:
        lines.append(f"QONNX parity: {parity['samples']} test images, "
                     f"max |diff| {parity['max_abs_diff']:.2g}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(summarize(sys.argv[1] if len(sys.argv) > 1 else "runs/demo_tfc_bnn") + "\n")
