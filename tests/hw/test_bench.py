"""hw.bench writes its JSON and Markdown tables (on one tiny shape of each kind)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw import bench


@pytest.mark.yosys
def test_bench_writes_tables(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench, "SHAPES", [("tiny", 16, 8, 8, 2, 1, 1)])
    monkeypatch.setattr(bench, "MULTIBIT", [("tiny 8-bit", 8, 4, 4, 2, False)])
    monkeypatch.setattr(bench, "REQUANT", [("tiny requant", 4, 2, 2, 6, 12)])
    monkeypatch.setattr(bench, "ACCPOOL", [("tiny pool", 4, 2, 4, 4)])
    assert bench.main(["--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "hw_mvtu_resources.json").read_text())
    assert [r["kind"] for r in rows] == ["binary weights", "8-bit weights x 8-bit inputs",
                                         "requant", "accpool"]
    assert rows[0]["lanes"] == 16 and rows[0]["LUT"] > 0 and rows[0]["DSP"] == 0
    assert rows[0]["LUT_per_lane"] == round(rows[0]["LUT"] / 16, 2)
    assert rows[1]["lanes"] == 8 and rows[1]["DSP"] > 0  # 8 x 8 products map to DSP48s
    assert rows[2]["lanes"] == 2 and rows[2]["CW"] <= 12
    md = (tmp_path / "hw_mvtu_resources.md").read_text()
    assert "| tiny | 16 x 8 | 2 x 8 |" in md and "| mvtu | tiny 8-bit | 8 |" in md
    assert "| requant | tiny requant | 2 |" in md
