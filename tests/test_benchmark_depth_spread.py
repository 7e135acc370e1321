"""benchmarks/depth_spread.py, the lead's GSM8K measurement of where each selection puts its nodes, runs end to end
on the tiny fakes and reports each combination from its own run's records."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "depth_spread.py"


def test_depth_spread_script_on_fakes(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("depth_spread", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--limit", "1",
                        "--rollouts", "3", "--max-new-tokens", "16", "--device", "cpu", "--out", str(tmp_path)])
    assert [(r["selection"], r["depth_windows"]) for r in rows] == [
        ("windows", "exponential"), ("windows", "even"), ("screened", "exponential"), ("screened", "even")]
    for row in rows:
        nodes = pq.read_table(tmp_path / f"{row['selection']}-{row['depth_windows']}" / "nodes.parquet").to_pandas()
        assert row["nodes"] == len(nodes) and row["informative"] == int(nodes.informative.sum())  # one teacher
        assert row["first_token_share_nodes"] == (nodes.position == 0).mean()
        late = nodes[nodes.informative & (nodes.depth_norm >= 0.5)]
        assert row["rollouts_with_late_informative"] == len(late[["question_id", "rollout_id"]].drop_duplicates())
    saved = json.loads((tmp_path / "depth_spread.json").read_text())
    assert len(saved) == 4 and json.dumps(saved, allow_nan=False)
    assert "| windows" in (tmp_path / "depth_spread.md").read_text() and "inf. per quarter" in capsys.readouterr().out
