"""The reasoning setting, small: Qwen2.5-Coder-0.5B-Instruct on one GSM8K question of the local data through `opd run`
(slow: about 2-4 minutes on 2 cores; skips without the part packages or the data)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from harness.sampling import gguf_parts
from harness.cli.main import main
from tests.helpers import parts_installed


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not parts_installed(gguf_parts.QWEN_CODER_05B),
                       reason="needs " + gguf_parts.QWEN_CODER_05B.install_command()),
]


def test_one_gsm8k_question_end_to_end(shared_data, tmp_path, capsys):
    if not (shared_data / "gsm8k").is_dir():
        pytest.skip(f"no GSM8K under {shared_data}")
    out = tmp_path / "run"
    code = main(["run", "--task", "gsm8k", "--student", "qwen2.5-coder-0.5b", "--teacher", "self",
                 "--teacher", "self:correct-demo", "--limit", "1", "--rollouts", "3", "--nodes-per-window", "1",
                 "--top-k", "2", "--continuations", "1", "--depth-windows", "even", "--max-new-tokens", "320",
                 "--data-dir", str(shared_data), "--out", str(out), "--quiet", "--no-cache"])
    assert code == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["counts"]["questions"] == 1
    questions = pq.read_table(out / "questions.parquet").to_pandas()
    assert len(questions) == 3
    # a chain of thought, not a direct answer: every response runs to tens of tokens at least
    assert (questions.response_tokens > 20).all()
    assert questions.gold.iloc[0] == "18"  # test question 0 (Janet's ducks): "#### 18"
    # each rollout ends at its final answer or at the cap, and a graded one has an extracted answer
    assert set(questions.finish_reason) <= {"answer", "eos", "length"}
    nodes = pq.read_table(out / "nodes.parquet").to_pandas()
    assert len(nodes) == 2 * meta["counts"]["nodes"] > 0
    # even depth windows put candidates past the first tokens of the chain
    assert nodes.position.max() > 20 and (nodes.depth_norm > 0.25).any()
    own = nodes[nodes.teacher == "self"]
    assert (own.kl_student_teacher == 0).all() and (own.dnorm_rkl == 0).all()
    demo = nodes[nodes.teacher == "self:correct-demo"]
    assert demo.context_ok.all() and (demo.kl_student_teacher > 0).all()  # the worked demonstration changes q
    assert np.isnan(nodes.loc[~nodes.informative, "align_rkl"]).all()
    assert "nodes diagnosed" in capsys.readouterr().out
