"""Leaderboard aggregates checked against a by-hand numpy recomputation on a small synthetic run."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from harness import stats
from harness.leaderboard import (
    COLUMNS,
    COMPARISON_COLUMNS,
    REFERENCE_TEACHER,
    TEACHER_LOSSES,
    ZERO_GRAD_NOTE,
    Column,
    leaderboard,
)
from harness.records import load_run
from harness.tables import format_table, print_rich
from harness.records import LOSS_NAMES, NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_json, write_table

TASK, STUDENT = "gsm8k", "smollm2-135m"
SELF, DEMO = "self", "self:correct-demo"
CORRECT = {("q0", 0): True, ("q0", 1): False, ("q1", 0): False, ("q1", 1): True}
UNINFORMATIVE = {("q0", 1, 2), ("q1", 0, 0)}  # all S_hat equal: g* = 0, alignment NaN for every teacher
NO_CONTEXT = {("q1", 1, 1)}  # DEMO's context could not be built here
DEMO_ZERO_FKL = ("q0", 0, 1)  # one DEMO node whose fkl direction happens to be exactly zero


def node_row(task, student, teacher, qid, rid, pos, **overrides):
    row = {
        "task": task, "student": student, "teacher": teacher, "question_id": qid, "rollout_id": rid,
        "position": pos, "rollout_len": 3, "depth_norm": pos / 3, "window": 0, "priority": 1.0, "entropy": 1.0,
        "rollout_correct": CORRECT.get((qid, rid), True), "support_token_ids": [1, 2], "sampled_token_id": 1,
        "grpo_advantage": 0.5, "student_logprobs": [-0.5, -1.0], "teacher_logprobs": [-0.6, -0.9],
        "kl_student_teacher": 0.1, "kl_teacher_student": 0.1, "l2": 0.1, "cos_pq": 0.9, "tv": 0.1,
        "topk_shared_mass": 1.0, "jsd_rbar": 0.01, "succ_correct": [1, 0], "succ_trials": [2, 2],
        "ideal_grad": [0.1, -0.1, 0.0], "ideal_norm": 1.0, "informative": True, "context_ok": True,
        **{f"align_{name}": 0.0 for name in LOSS_NAMES}, **{f"dnorm_{name}": 1.0 for name in LOSS_NAMES},
    }
    row.update(overrides)
    return row


def synthetic_rows(seed=0):
    """2 questions x 2 rollouts x 3 nodes x 2 teachers; SELF has zero gradients, DEMO random alignments."""
    rng = np.random.default_rng(seed)
    keys = [(q, r, p) for q in ("q0", "q1") for r in (0, 1) for p in range(3)]
    # GRPO's alignment is teacher-independent: one value per node, shared by both teachers
    grpo = dict(zip(keys, rng.uniform(-1, 1, len(keys))))
    ideal_norm = dict(zip(keys, rng.uniform(0.1, 2.0, len(keys))))  # ||g*|| has no teacher in it either
    rows = []
    for teacher in (SELF, DEMO):
        for qid in ("q0", "q1"):
            for rid in (0, 1):
                for pos in range(3):
                    key = (qid, rid, pos)
                    informative = key not in UNINFORMATIVE
                    context_ok = not (teacher == DEMO and key in NO_CONTEXT)
                    row = node_row(TASK, STUDENT, teacher, qid, rid, pos, informative=informative,
                                   context_ok=context_ok, ideal_norm=float(ideal_norm[key]),
                                   align_grpo=float(grpo[key]) if informative else math.nan,
                                   dnorm_grpo=0.7)
                    for loss in TEACHER_LOSSES:
                        if teacher == SELF:
                            row[f"align_{loss}"] = 0.0 if informative else math.nan
                            row[f"dnorm_{loss}"] = 0.0
                        else:
                            row[f"align_{loss}"] = float(rng.uniform(-1, 1)) if informative and context_ok else math.nan
                            row[f"dnorm_{loss}"] = float(rng.uniform(0.5, 1.5))
                    if teacher == DEMO and key == DEMO_ZERO_FKL:
                        row["dnorm_fkl"] = 0.0
                    rows.append(row)
    return rows


def expected(rows, teacher, loss):
    """The leaderboard row recomputed directly from the row dicts with numpy."""
    sel = [r for r in rows if r["teacher"] == teacher]
    gate = [r["informative"] and (loss == "grpo" or r["context_ok"]) for r in sel]
    inf = [r for r, g in zip(sel, gate) if g and np.isfinite(r[f"align_{loss}"])]
    a = np.array([r[f"align_{loss}"] for r in inf])
    w = np.array([r["ideal_norm"] for r in inf])
    c = np.array([r["rollout_correct"] for r in inf])
    base = [r for r, g in zip(sel, gate) if g]
    return {
        "questions": len({r["question_id"] for r in sel}),
        "rollouts": len({(r["question_id"], r["rollout_id"]) for r in sel}),
        "nodes": len(sel),
        "informative": len(inf),
        "no_context": sum(not r["context_ok"] for r in sel),
        "align": a.mean(),
        "align_correct": a[c].mean(),
        "align_incorrect": a[~c].mean(),
        "corr_minus_incorr": a[c].mean() - a[~c].mean(),
        "walign": (a * w).sum() / w.sum(),
        "pos_frac": (a > 0).mean(),
        "zero_grad": np.mean([r[f"dnorm_{loss}"] == 0.0 for r in base]),
    }


@pytest.fixture
def run_dir(tmp_path):
    rows = synthetic_rows()
    write_table(rows_to_table(rows, NODE_SCHEMA), tmp_path / "nodes.parquet")
    questions = [
        {"task": TASK, "student": STUDENT, "question_id": q, "rollout_id": r, "prompt_tokens": 10, "response": "x",
         "response_tokens": 3, "response_token_ids": [1, 2, 3], "finish_reason": "eos", "extracted": "1", "gold": "1", "correct": ok,
         "grpo_advantage": 0.0}
        for (q, r), ok in CORRECT.items()
    ]
    write_table(rows_to_table(questions, QUESTION_SCHEMA), tmp_path / "questions.parquet")
    return tmp_path


def test_every_column_matches_hand_recomputation(run_dir):
    rows = synthetic_rows()
    nodes, questions, run_json = load_run(run_dir)
    assert run_json == {} and len(questions) == 4 and len(nodes) == 24
    board = leaderboard(nodes)
    assert list(board.columns) == ["task", "student", "teacher", "loss", *(c.name for c in COLUMNS),
                                   *COMPARISON_COLUMNS]
    assert len(board) == 2 * len(TEACHER_LOSSES) + 1
    for teacher in (SELF, DEMO):
        for loss in TEACHER_LOSSES:
            got = board[(board.teacher == teacher) & (board.loss == loss)]
            assert len(got) == 1
            for name, value in expected(rows, teacher, loss).items():
                assert got.iloc[0][name] == pytest.approx(value, abs=1e-12), (teacher, loss, name)


def test_known_values(run_dir):
    """Spot values that do not depend on the recomputation above being right."""
    board = leaderboard(load_run(run_dir)[0])
    demo_rkl = board[(board.teacher == DEMO) & (board.loss == "rkl")].iloc[0]
    assert (demo_rkl.questions, demo_rkl.rollouts, demo_rkl.nodes) == (2, 4, 12)
    assert demo_rkl.informative == 12 - 2 - 1 and demo_rkl.no_context == 1
    assert demo_rkl.zero_grad == 0.0
    demo_fkl = board[(board.teacher == DEMO) & (board.loss == "fkl")].iloc[0]
    assert demo_fkl.zero_grad == pytest.approx(1 / 9)
    self_rows = board[board.teacher == SELF]
    assert len(self_rows) == 4
    assert (self_rows.zero_grad == 1.0).all() and (self_rows["align"] == 0.0).all()
    assert (self_rows.walign == 0.0).all() and (self_rows.pos_frac == 0.0).all()
    assert (self_rows.informative == 10).all() and (self_rows.no_context == 0).all()


def test_grpo_single_reference_row(run_dir):
    rows = synthetic_rows()
    board = leaderboard(load_run(run_dir)[0])
    grpo = board[board.loss == "grpo"]
    assert len(grpo) == 1
    row = grpo.iloc[0]
    assert row.teacher == REFERENCE_TEACHER
    want = expected(rows, SELF, "grpo")  # first teacher in order of appearance
    for name, value in want.items():
        assert row[name] == pytest.approx(value, abs=1e-12), name
    # teacher-independent: DEMO's missing context at one node does not drop it from the reference row
    assert row.informative == 10
    assert want == pytest.approx(expected(rows, DEMO, "grpo") | {"no_context": 0})
    assert row.zero_grad == 0.0


def test_ranked_by_walign_within_task_student(run_dir):
    nodes = load_run(run_dir)[0]
    other = nodes.copy()
    other["student"] = "other-student"
    other.loc[other.teacher == DEMO, "informative"] = False  # DEMO rows of this student: all NaN
    board = leaderboard(pd.concat([nodes, other], ignore_index=True))
    assert list(pd.unique(board.student)) == [STUDENT, "other-student"]
    for _, group in board.groupby("student", sort=False):
        walign = group.walign.to_numpy()
        finite = walign[np.isfinite(walign)]
        assert np.all(np.diff(finite) <= 0)
        assert np.isfinite(walign[: len(finite)]).all()  # NaN only at the end
        assert (group.loss == "grpo").sum() == 1
    other_rows = board[board.student == "other-student"]
    assert other_rows[other_rows.teacher == DEMO].walign.isna().all()
    assert other_rows.walign.isna().sum() == 4 and other_rows.iloc[-4:].walign.isna().all()


def test_zero_informative_gives_nan_not_error():
    rows = [node_row(TASK, STUDENT, DEMO, "q0", 0, p, informative=False,
                     **{f"align_{n}": math.nan for n in LOSS_NAMES}) for p in range(3)]
    nodes = pd.DataFrame(rows)
    board = leaderboard(nodes)
    assert len(board) == 5
    assert (board.informative == 0).all() and (board.nodes == 3).all()
    for name in ("align", "align_correct", "align_incorrect", "walign", "pos_frac", "zero_grad"):
        assert board[name].isna().all(), name
    records = json.loads(format_table(board, "json"))
    assert records[0]["align"] is None and records[0]["informative"] == 0
    assert "—" in format_table(board, "md")


def test_empty_nodes_table():
    nodes = pd.DataFrame(columns=NODE_SCHEMA.names)
    board = leaderboard(nodes)
    assert board.empty and list(board.columns)[:4] == ["task", "student", "teacher", "loss"]
    print_rich(board, Console(file=io.StringIO()))


def test_formats_parse_back(run_dir):
    board = leaderboard(load_run(run_dir)[0])
    records = json.loads(format_table(board, "json"))
    assert len(records) == len(board)
    for record, (_, row) in zip(records, board.iterrows()):
        assert record["teacher"] == row.teacher and record["informative"] == row.informative
        assert record["walign"] == pytest.approx(row.walign, abs=5e-4)
    back = pd.read_csv(io.StringIO(format_table(board, "csv")))
    assert list(back.columns) == list(board.columns)
    np.testing.assert_allclose(back["align"].to_numpy(), board["align"].to_numpy(), atol=5e-4)
    assert (back.nodes == board.nodes).all()
    md = format_table(board, "md")
    assert md.splitlines()[0].startswith("| task") and "walign" in md.splitlines()[0]
    assert len(md.splitlines()) == len(board) + 2
    latex = format_table(board, "latex")
    assert "\\toprule" in latex and "walign" in latex
    one = board[(board.teacher == DEMO) & (board.loss == "rkl")]
    assert f"{one.iloc[0]['align']:.3f}" in format_table(one, "md")
    with pytest.raises(ValueError, match="unknown format"):
        format_table(board, "xml")


def test_print_rich_footnote_caption_and_nan(run_dir):
    board = leaderboard(load_run(run_dir)[0])
    board.loc[board.index[0], "align_correct"] = math.nan
    buffer = io.StringIO()
    print_rich(board, Console(file=buffer, width=250, color_system=None))
    text = buffer.getvalue()
    assert TASK in text and STUDENT in text
    assert ZERO_GRAD_NOTE in text and "1.000" in text
    assert "—" in text
    assert "n = 2 questions · 4 rollouts · 9–10 informative nodes" in text
    # no footnote when no row has a zero gradient
    buffer = io.StringIO()
    print_rich(board[board.teacher != SELF], Console(file=buffer, width=250, color_system=None))
    assert ZERO_GRAD_NOTE not in buffer.getvalue()


def test_extra_column_spec(run_dir):
    extra = Column("n_questions_informative", lambda cell: len(set(cell.question_ids)))
    board = leaderboard(load_run(run_dir)[0], columns=[*COLUMNS, extra])
    assert board.columns[-1 - len(COMPARISON_COLUMNS)] == "n_questions_informative"
    assert (board.n_questions_informative == 2).all()
    # the old call shape still works: a custom column list without walign gets no comparison columns
    plain = leaderboard(load_run(run_dir)[0], columns=[extra])
    assert list(plain.columns) == ["task", "student", "teacher", "loss", "n_questions_informative"]


def test_load_run_errors_and_run_json(tmp_path, run_dir):
    with pytest.raises(FileNotFoundError, match=r"nodes\.parquet.*opd run --out RUN_DIR"):
        load_run(tmp_path / "missing")
    (run_dir / "questions.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"questions\.parquet"):
        load_run(run_dir)
    fresh = tmp_path / "fresh"
    write_table(rows_to_table(synthetic_rows(), NODE_SCHEMA), fresh / "nodes.parquet")
    write_table(rows_to_table([], QUESTION_SCHEMA), fresh / "questions.parquet")
    write_json({"seed": 7}, fresh / "run.json")
    assert load_run(fresh)[2] == {"seed": 7}


# ---------------------------------------------------------------- significance columns


def informative_rows(rows, teacher, loss):
    return [r for r in rows if r["teacher"] == teacher and r["informative"] and (loss == "grpo" or r["context_ok"])
            and np.isfinite(r[f"align_{loss}"])]


def test_intervals_match_direct_bootstrap(run_dir):
    rows = synthetic_rows()
    board = leaderboard(load_run(run_dir)[0], resamples=300, permutations=500, seed=3)
    for teacher in (SELF, DEMO):
        for loss in TEACHER_LOSSES:
            inf = informative_rows(rows, teacher, loss)
            a = np.array([r[f"align_{loss}"] for r in inf])
            w = np.array([r["ideal_norm"] for r in inf])
            q = [r["question_id"] for r in inf]
            got = board[(board.teacher == teacher) & (board.loss == loss)].iloc[0]
            ci = stats.cluster_bootstrap(a, q, resamples=300, seed=3)
            wci = stats.cluster_bootstrap(a, q, w, resamples=300, seed=3)
            assert (got.align_lo, got.align_hi) == pytest.approx((ci.lo, ci.hi))
            assert (got.walign_lo, got.walign_hi) == pytest.approx((wci.lo, wci.hi))
            assert got.align_lo <= got["align"] + 1e-12 and got["align"] <= got.align_hi + 1e-12
            # with 2 questions a resample is q0 twice, q1 twice, or both: the interval lies between those means
            means = [a[np.isin(q, keep)].mean() for keep in (["q0"], ["q1"])]
            assert min(means) - 1e-12 <= got.align_lo and got.align_hi <= max(means) + 1e-12


def exact_sign_flip(d):
    """Two-sided sign-flip p-value by full enumeration of the 2^n sign patterns."""
    flips = np.array(np.meshgrid(*[[1, -1]] * len(d))).reshape(len(d), -1).T
    null = np.abs((flips * d).mean(axis=1))
    return np.mean(null >= abs(np.mean(d)) - 1e-12)


def test_p_vs_leader_is_exact_paired_sign_flip(run_dir):
    rows = synthetic_rows()
    board = leaderboard(load_run(run_dir)[0], resamples=50, permutations=1000)
    for loss in TEACHER_LOSSES:
        family = board[board.loss == loss]
        leader = family.loc[family.walign.idxmax()]
        other = family[family.teacher != leader.teacher].iloc[0]
        assert np.isnan(leader.p_vs_leader) and not leader.behind
        # direct recomputation: per question, ||g*||-weighted mean difference over nodes informative for both
        lead = {(r["question_id"], r["rollout_id"], r["position"]): r for r in informative_rows(rows, leader.teacher, loss)}
        diffs = {}
        for r in informative_rows(rows, other.teacher, loss):
            key = (r["question_id"], r["rollout_id"], r["position"])
            if key in lead:
                num, den = diffs.get(r["question_id"], (0.0, 0.0))
                w = lead[key]["ideal_norm"]
                diffs[r["question_id"]] = (num + w * (r[f"align_{loss}"] - lead[key][f"align_{loss}"]), den + w)
        d = np.array([num / den for num, den in diffs.values()])
        # one comparison per family: Holm leaves it unchanged; 2^2 patterns < permutations: scipy is exact
        assert other.p_vs_leader == pytest.approx(exact_sign_flip(d))
        assert not other.behind  # with 2 questions the smallest possible p is 0.5


def exact_within_question_permutation(rows, loss):
    """p of align_correct - align_incorrect, enumerating every within-question relabelling of the rollouts."""
    import itertools

    inf = informative_rows(rows, DEMO, loss)
    label = {key: ok for key, ok in CORRECT.items()}
    per_q = {q: sorted({r["rollout_id"] for r in inf if r["question_id"] == q}) for q in ("q0", "q1")}

    def stat(lab):
        a = np.array([r[f"align_{loss}"] for r in inf])
        c = np.array([lab[(r["question_id"], r["rollout_id"])] for r in inf])
        return a[c].mean() - a[~c].mean()

    observed = stat(label)
    null = []
    for perms in itertools.product(*[itertools.permutations(per_q[q]) for q in ("q0", "q1")]):
        lab = {}
        for q, perm in zip(("q0", "q1"), perms):
            for rid, src in zip(per_q[q], perm):
                lab[(q, rid)] = label[(q, src)]
        null.append(stat(lab))
    return np.mean(np.abs(null) >= abs(observed) - 1e-12)


def test_p_corr_incorr_matches_enumeration_and_bh(run_dir):
    rows = synthetic_rows()
    board = leaderboard(load_run(run_dir)[0], resamples=50, permutations=4000)
    for loss in TEACHER_LOSSES:
        got = board[(board.teacher == DEMO) & (board.loss == loss)].iloc[0]
        assert got.p_corr_incorr == pytest.approx(exact_within_question_permutation(rows, loss), abs=0.03)
        assert got.diff_lo <= got.diff_hi
    np.testing.assert_allclose(board.q_corr_incorr, stats.benjamini_hochberg(board.p_corr_incorr))


def test_accuracy_from_run_dir(run_dir):
    assert leaderboard(load_run(run_dir)[0], resamples=20, permutations=20).accuracy.isna().all()
    write_json({DEMO: 0.75, SELF: {"accuracy": 0.5, "n": 4}}, run_dir / "accuracy.json")
    board = leaderboard(load_run(run_dir)[0], resamples=20, permutations=20)
    assert (board[board.teacher == DEMO].accuracy == 0.75).all()
    assert (board[board.teacher == SELF].accuracy == 0.5).all()
    assert board[board.teacher == REFERENCE_TEACHER].accuracy.isna().all()
    records = [{"task": TASK, "student": STUDENT, "teacher": DEMO, "accuracy": 0.25}]
    board = leaderboard(load_run(run_dir)[0], resamples=20, permutations=20, accuracy=records)
    assert (board[board.teacher == DEMO].accuracy == 0.25).all() and board[board.teacher == SELF].accuracy.isna().all()


def test_json_has_estimates_intervals_n_and_corrected_p(run_dir):
    board = leaderboard(load_run(run_dir)[0], resamples=50, permutations=200)
    records = json.loads(format_table(board, "json"))
    for record in records:
        for key in ("align", "align_lo", "align_hi", "walign", "walign_lo", "walign_hi", "corr_minus_incorr",
                    "diff_lo", "diff_hi", "p_corr_incorr", "q_corr_incorr", "p_vs_leader", "behind",
                    "questions", "rollouts", "informative", "accuracy"):
            assert key in record, key
    assert format_table(board, "latex").count("\\midrule") == 1


def test_seed_makes_intervals_reproducible(run_dir):
    nodes = load_run(run_dir)[0]
    one = leaderboard(nodes, resamples=100, permutations=100, seed=1)
    two = leaderboard(nodes, resamples=100, permutations=100, seed=1)
    pd.testing.assert_frame_equal(one, two)


# ---------------------------------------------------------------- opd leaderboard flags


def test_cli_loss_seed_and_resamples(run_dir, capsys):
    from harness.cli import main

    argv = ["leaderboard", str(run_dir), "--format", "json", "--seed", "3", "--resamples", "300",
            "--permutations", "500"]
    assert main(argv) == 0
    every = json.loads(capsys.readouterr().out)
    # the flags reach leaderboard() unchanged
    direct = json.loads(format_table(leaderboard(load_run(run_dir)[0], seed=3, resamples=300, permutations=500),
                                     "json"))
    assert every == direct
    assert main([*argv, "--loss", "jsd", "--loss", "grpo", "--loss", "jsd"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert {r["loss"] for r in chosen} == {"jsd", "grpo"} and len(chosen) == 3  # SELF, DEMO and the reference row
    # selected rows keep the full table's values (q_corr_incorr is BH-corrected over every row of a task x student)
    assert chosen == [r for r in every if r["loss"] in ("jsd", "grpo")]


def test_cli_defaults_are_the_stats_defaults(run_dir, monkeypatch, capsys):
    import harness.leaderboard as board
    from harness.cli import main

    seen = {}

    def spy(nodes, **settings):
        seen.update(settings)
        return leaderboard(nodes, resamples=20, permutations=20)

    monkeypatch.setattr(board, "leaderboard", spy)
    assert main(["leaderboard", str(run_dir), "--format", "csv"]) == 0
    capsys.readouterr()
    assert seen == {"seed": 0, "resamples": stats.RESAMPLES, "permutations": stats.PERMUTATIONS}


def test_check_losses_refuses_a_registered_loss_without_records():
    from harness.options import check_losses
    from harness.losses import LOSSES, resolve_loss
    from harness.registry import RegistryError

    assert check_losses(["rkl", "grpo", "rkl"]) == ("rkl", "grpo")
    LOSSES.add("test-plugin-loss", lambda: resolve_loss("rkl"), "test fake")
    try:
        with pytest.raises(RegistryError, match=r"'test-plugin-loss' cannot be used here: run records hold "
                                                r"alignments only for the built-in losses\. Choose --loss among rkl"):
            check_losses(["test-plugin-loss"])
    finally:
        LOSSES.remove("test-plugin-loss")
