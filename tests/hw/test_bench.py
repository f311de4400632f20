"""hw.bench writes its JSON and Markdown tables (on one tiny shape)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw import bench


@pytest.mark.yosys
def test_bench_writes_tables(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench, "SHAPES", [("tiny", 16, 8, 8, 2, 1, 1)])
    assert bench.main(["--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "hw_mvtu_resources.json").read_text())
    assert rows[0]["lanes"] == 16 and rows[0]["LUT"] > 0
    assert rows[0]["LUT_per_lane"] == round(rows[0]["LUT"] / 16, 2)
    assert "| tiny | 16 x 8 | 2 x 8 |" in (tmp_path / "hw_mvtu_resources.md").read_text()
