"""Training checkpoints: everything needed to rebuild the model and to resume training exactly.

A checkpoint is a dict saved with ``torch.save``:
``format``, ``config`` (net/method/dataset/training options), ``model`` (state dict),
``optimizer``, ``scheduler``, ``epoch`` (epochs completed), ``history`` (per-epoch metrics) and
``rng`` (torch's global RNG state, which drives dropout).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "bnnforge-checkpoint-1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (a crash never leaves a half-written checkpoint)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (an interruption leaves the old file whole)."""
    import json

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a bnnforge checkpoint (format {FORMAT!r} expected)")
    return ckpt


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(model in eval mode with the checkpoint's weights, its config, the whole checkpoint)."""
    from models.nets import build_net

    ckpt = load_checkpoint(path)
    try:
        model = build_net(ckpt["config"])
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable bnnforge checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    return model.eval(), ckpt["config"], ckpt
