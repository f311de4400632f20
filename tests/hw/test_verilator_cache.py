"""The Verilator cache's bound: least recently used executables go first, ccache's folder is left
to ccache, and an interrupted build's folder is dropped once stale (no Verilator needed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hw import verilator


def entry(cache: Path, name: str, size: int, age: float, exe: bool = True) -> Path:
    d = cache / name
    d.mkdir(parents=True)
    f = d / ("sim" if exe else "obj.o")
    f.write_bytes(b"\0" * size)
    t = time.time() - age
    os.utime(f, (t, t))
    os.utime(d, (t, t))
    return d


def test_prune_drops_least_recently_used_and_stale(tmp_path: Path) -> None:
    mb = 2**20
    old = entry(tmp_path, "mvtu_old", mb, 300)
    mid = entry(tmp_path, "mvtu_mid", mb, 200)
    new = entry(tmp_path, "accel_new", mb, 100)
    stale = entry(tmp_path, "accel_k3j2", 4 * mb, verilator.STALE_SECONDS + 60, exe=False)
    running = entry(tmp_path, "accel_x9q1", 4 * mb, 10, exe=False)  # a build in progress
    ccache = entry(tmp_path, "ccache", 8 * mb, 1000, exe=False)
    dropped = verilator.prune(tmp_path, limit_mb=2.5)
    assert sorted(dropped) == sorted([stale, old])
    assert mid.exists() and new.exists() and running.exists() and ccache.exists()
    assert verilator.prune(tmp_path, limit_mb=2.5) == []
    assert verilator.prune(tmp_path, limit_mb=0.5) == [mid, new]  # oldest first
