"""Leaderboard columns, pairs and verdicts against independent recomputations on synthetic runs (pandas group-bys,
brute-force sign enumeration, hand Holm / BH), plus the statistical failure modes the review found: a claim's
direction, family-wise error under a global null, a pooled contrast confounded by question difficulty, and n."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.render.tables import format_table
from harness.reports import stats
from harness.reports.leaderboard import (
    COLUMNS,
    COMPARISON_COLUMNS,
    PAIR_COLUMNS,
    REFERENCE_TEACHER,
    TEACHER_LOSSES,
    Column,
    build,
    iter_cells,
    leaderboard,
    pairs,
)
from harness.storage.records import (
    LOSS_NAMES,
    NODE_SCHEMA,
    QUESTION_SCHEMA,
    load_run,
    rows_to_table,
    write_json,
    write_table,
)
from tests.helpers import DEMO, QUESTIONS, SELF, STUDENT, TASK, WRONG, node_row, synthetic_rows

FAST = stats.Options(permutations=500, resamples=50)
EXACT = stats.Options(permutations=5000, resamples=50)  # every sign pattern is enumerated up to 12 questions


@pytest.fixture
def run_dir(tmp_path):
    rows = synthetic_rows()
    write_table(rows_to_table(rows, NODE_SCHEMA), tmp_path / "nodes.parquet")
    questions = [{"task": TASK, "student": STUDENT, "question_id": q, "rollout_id": r, "prompt_tokens": 10,
                  "response": "x", "response_tokens": 3, "response_token_ids": [1, 2, 3], "finish_reason": "eos",
                  "extracted": "1", "gold": "1", "correct": True, "grpo_advantage": 0.0}
                 for q in QUESTIONS for r in range(3)]
    write_table(rows_to_table(questions, QUESTION_SCHEMA), tmp_path / "questions.parquet")
    return tmp_path


# ---------------------------------------------------------------- independent recomputation


def exact_p(contributions_by_question: np.ndarray) -> float:
    """Two-sided sign-flip p-value enumerating every sign pattern of the per-question contributions."""
    c = np.asarray(contributions_by_question, dtype=float)
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=c.size)))
    return float(np.mean(np.abs(signs @ c) >= abs(c.sum()) - 1e-12))


def expected(frame: pd.DataFrame, teacher: str, loss: str) -> dict:
    """The row's columns from the nodes with pandas, independently of harness.reports.leaderboard."""
    rows = frame[frame.teacher == teacher]
    gate = rows.informative & (True if loss == "grpo" else rows.context_ok)
    used = rows[gate & rows[f"align_{loss}"].notna()]
    a, w = used[f"align_{loss}"], used.ideal_norm
    correct, incorrect = used[used.rollout_correct], used[~used.rollout_correct]
    per_q = used.groupby(["question_id", "rollout_correct"])[f"align_{loss}"].mean().unstack()
    contrast = (per_q[True] - per_q[False]).dropna()
    halves = rows[gate].reindex(columns=[f"align_{loss}_a", f"align_{loss}_b"]).dropna()
    r = np.corrcoef(halves.iloc[:, 0], halves.iloc[:, 1])[0, 1] if len(halves) > 2 else math.nan
    return {
        "questions": rows.question_id.nunique(), "nodes": len(rows),
        "rollouts": len(rows[["question_id", "rollout_id"]].drop_duplicates()),
        "informative": int(gate.sum()), "no_context": int((~rows.context_ok).sum()),
        "zero_d": float((rows[gate][f"dnorm_{loss}"] == 0).mean()),
        "align": a.mean(), "walign": (a * w).sum() / w.sum(),
        "align_questions": used.question_id.nunique(), "align_nodes": len(used),
        "align_correct": correct[f"align_{loss}"].mean(), "correct_questions": correct.question_id.nunique(),
        "correct_nodes": len(correct), "align_incorrect": incorrect[f"align_{loss}"].mean(),
        "incorrect_questions": incorrect.question_id.nunique(), "incorrect_nodes": len(incorrect),
        "ok_minus_bad": contrast.mean(), "ok_bad_questions": len(contrast),
        "p_ok_minus_bad": exact_p(contrast.to_numpy()),
        "pos_frac": (a > 0).mean(), "reliability": 2 * r / (1 + r), "reliability_nodes": len(halves),
    }


def test_every_column_matches_independent_recomputation(run_dir):
    frame = pd.DataFrame(synthetic_rows())
    nodes, questions, run_json = load_run(run_dir)
    assert run_json == {} and len(questions) == 36
    board = leaderboard(nodes, options=EXACT)
    assert list(board.columns) == ["task", "student", "teacher", "loss", *(c.name for c in COLUMNS),
                                   *COMPARISON_COLUMNS]
    assert len(board) == 3 * len(TEACHER_LOSSES) + 1
    for teacher in (DEMO, WRONG):
        for loss in TEACHER_LOSSES:
            got = board[(board.teacher == teacher) & (board.loss == loss)].iloc[0]
            for name, value in expected(frame, teacher, loss).items():
                assert got[name] == pytest.approx(value, abs=1e-12), (teacher, loss, name)
    grpo = board[board.loss == "grpo"].iloc[0]
    assert grpo.teacher == REFERENCE_TEACHER
    for name, value in expected(frame, SELF, "grpo").items():  # the first teacher's rows stand for all
        assert grpo[name] == pytest.approx(value, abs=1e-12, nan_ok=True), name


def test_each_estimate_states_its_own_n(run_dir):
    board = leaderboard(load_run(run_dir)[0], options=FAST)
    wrong = board[(board.teacher == WRONG) & (board.loss == "rkl")].iloc[0]
    demo = board[(board.teacher == DEMO) & (board.loss == "rkl")].iloc[0]
    assert wrong.questions == demo.questions == 12  # the cell holds every question...
    assert wrong.align_questions == 10 and demo.align_questions == 12  # ...the estimates rest on their own n
    assert wrong.ok_bad_questions <= wrong.align_questions


def test_intervals_are_inverted_exact_tests(run_dir):
    """walign's interval: the grid points whose exact sign-flip p-value (2^12 patterns) is >= 0.05."""
    frame = pd.DataFrame(synthetic_rows())
    board = leaderboard(load_run(run_dir)[0], options=EXACT)
    got = board[(board.teacher == DEMO) & (board.loss == "jsd")].iloc[0]
    used = frame[(frame.teacher == DEMO) & frame.informative & frame.context_ok & frame.align_jsd.notna()]
    per_q = used.assign(wa=used.align_jsd * used.ideal_norm).groupby("question_id")[["wa", "ideal_norm"]].sum()
    grid = got.walign + np.linspace(-0.6, 0.6, 601)
    accepted = [d for d in grid if exact_p(per_q.wa - d * per_q.ideal_norm) >= 0.05]
    assert got.walign_lo == pytest.approx(min(accepted), abs=2e-3)
    assert got.walign_hi == pytest.approx(max(accepted), abs=2e-3)


def test_q_values_are_benjamini_hochberg_by_hand():
    """BH over the rows whose contrast rests on 10 questions or more (DEMO: 12, WRONG: 10); the rest stay out."""
    frame = pd.DataFrame(synthetic_rows())
    frame["rollout_correct"] = frame.rollout_id == 0  # every question has both kinds of path
    board = leaderboard(frame, options=FAST)
    assert {10, 12} <= set(board.ok_bad_questions[board.ok_minus_bad.notna()])
    p = np.where(board.ok_bad_questions >= 10, board.p_ok_minus_bad, np.nan)
    ok = np.isfinite(p)
    assert ok.sum() >= 8 and board.q_ok_minus_bad[board.ok_bad_questions < 10].isna().all()
    order = np.argsort(p[ok])[::-1]
    m, running, by_hand = ok.sum(), 1.0, np.empty(ok.sum())
    for position, index in enumerate(order):
        running = min(running, p[ok][index] * m / (m - position))
        by_hand[index] = running
    np.testing.assert_allclose(board.q_ok_minus_bad.to_numpy()[ok], by_hand)
    assert board.q_ok_minus_bad[~ok].isna().all()


def test_zero_directions_have_no_alignment_and_count_in_zero_d(run_dir):
    board = leaderboard(load_run(run_dir)[0], options=FAST)
    control = board[board.teacher == SELF]
    assert len(control) == 4 and (control.zero_d == 1.0).all()
    for name in ("align", "walign", "pos_frac", "align_correct", "ok_minus_bad"):
        assert control[name].isna().all(), name  # not 0: no alignment is defined
    assert (control.group == "").all()
    grpo = board[board.loss == "grpo"].iloc[0]
    assert 0 < grpo.zero_d < 1 and grpo.align_nodes < grpo.informative


def exact_pair(frame, first, second, loss):
    """walign(first) - walign(second) on the shared nodes, and its exact sign-flip p."""
    def used(teacher):
        rows = frame[(frame.teacher == teacher) & frame.informative & frame.context_ok]
        return rows[rows[f"align_{loss}"].notna()].set_index(["question_id", "rollout_id", "position"])

    second_align = used(second)[[f"align_{loss}"]].rename(columns={f"align_{loss}": f"align_{loss}_2"})
    both = used(first)[[f"align_{loss}", "ideal_norm"]].join(second_align, how="inner")
    both["c"] = (both[f"align_{loss}"] - both[f"align_{loss}_2"]) * both.ideal_norm
    per_q = both.groupby(level="question_id")[["c", "ideal_norm"]].sum()
    return per_q.c.sum() / per_q.ideal_norm.sum(), exact_p(per_q.c.to_numpy()), len(per_q)


def test_pairs_cover_all_teachers_with_holm_over_all_of_them(run_dir):
    """Three teachers with alignments: all three pairs of each loss, p exact, Holm over the loss's family."""
    frame = pd.DataFrame(synthetic_rows())
    frame = pd.concat([frame, frame[frame.teacher == DEMO].assign(
        teacher="model:x", **{f"align_{loss}": frame[frame.teacher == DEMO][f"align_{loss}"] * 0.5
                              for loss in TEACHER_LOSSES})], ignore_index=True)
    board = build(frame, options=EXACT)
    assert list(board.pairs.columns) == list(PAIR_COLUMNS)
    for loss in TEACHER_LOSSES:
        family = board.pairs[board.pairs.loss == loss]
        assert len(family) == 3 and SELF not in set(family.teacher) | set(family.other)
        raw = []
        for row in family.itertuples():
            diff, p, questions = exact_pair(frame, row.teacher, row.other, loss)
            assert row.diff == pytest.approx(diff) and row.p == pytest.approx(p) and row.questions == questions
            raw.append(p)
        order = np.argsort(raw)
        holm, running = np.empty(3), 0.0
        for rank, index in enumerate(order):
            running = max(running, (3 - rank) * raw[index])
            holm[index] = min(1.0, running)
        np.testing.assert_allclose(family.p_holm, holm)
        for row in family.itertuples():  # a claim's direction is the sign of the tested difference
            if row.verdict == "ahead":
                assert row.diff > 0 and row.p_holm < 0.05
            elif row.verdict == "behind":
                assert row.diff < 0 and row.p_holm < 0.05
            else:
                assert row.verdict == "inconclusive" and not row.p_holm < 0.05


def test_behind_points_the_way_of_the_tested_statistic():
    """One 50-node question where A leads by 0.5, eleven one-node questions where B leads by 0.2: the old table
    flagged B behind A with p = 0.03 from per-question means while its direction came from pooled walign. Here the
    tested statistic is the pooled difference itself (A ahead by 0.37), and its question-level test cannot call it."""
    rows = []
    for teacher, lead in (("A", 0.5), ("B", 0.0)):
        for pos in range(50):
            rows.append(node_row(TASK, STUDENT, teacher, "big", 0, pos, **{f"align_{l}": lead for l in LOSS_NAMES}))
        for i in range(11):
            rows.append(node_row(TASK, STUDENT, teacher, f"small{i}", 0, 0,
                                 **{f"align_{l}": 0.0 if teacher == "A" else 0.2 for l in LOSS_NAMES}))
    board = build(pd.DataFrame(rows), options=FAST)
    pair = board.pairs[board.pairs.loss == "rkl"].iloc[0]
    assert (pair.teacher, pair.other) == ("A", "B")
    assert pair["diff"] == pytest.approx((50 * 0.5 - 11 * 0.2) / 61)
    assert pair.p == pytest.approx(1.0) and pair.verdict == "inconclusive"
    assert (board.table.behind == "").all()


def test_false_claims_under_a_global_null_stay_below_alpha():
    """Five exchangeable teachers on 30 questions: the share of runs with any ahead/behind claim is the family-wise
    error rate. Picking a leader from the data and correcting only K-1 tests gave ~10%; all pairs with Holm <= 5%."""
    rng = np.random.default_rng(0)
    teachers = [f"t{i}" for i in range(5)]
    runs, with_claim = 150, 0
    for run in range(runs):
        rows = []
        for q in range(30):
            base = rng.normal(0.2, 0.3)
            for pos in range(int(rng.integers(1, 6))):
                weight = float(rng.lognormal(0, 0.5))
                for teacher in teachers:
                    rows.append(node_row(TASK, STUDENT, teacher, f"q{q}", 0, pos, ideal_norm=weight,
                                         align_rkl=float(base + rng.normal(0, 0.3))))
        cells = [cell for cell in iter_cells(pd.DataFrame(rows), stats.Options(permutations=400, seed=run))
                 if cell.loss == "rkl"]
        walign = [float(np.dot(cell.align, cell.weights) / cell.weights.sum()) for cell in cells]
        with_claim += pairs(cells, walign).verdict.isin(["ahead", "behind"]).any()
    assert with_claim / runs <= 0.07


def test_ok_minus_bad_is_within_question():
    """Easy questions (all paths correct, high alignment) and hard ones (all incorrect, low) plus mixed questions
    with no within-question effect: the pooled contrast is large, the within-question one is not."""
    rng = np.random.default_rng(3)
    rows = []
    for q in range(30):
        kind = q % 3  # 0 easy, 1 hard, 2 mixed
        level = {0: 0.6, 1: 0.0, 2: 0.3}[kind]
        for r in range(4):
            correct = kind == 0 or (kind == 2 and r < 2)
            for pos in range(3):
                rows.append(node_row(TASK, STUDENT, DEMO, f"q{q}", r, pos, rollout_correct=correct,
                                     align_rkl=float(level + rng.normal(0, 0.2))))
    board = leaderboard(pd.DataFrame(rows), options=FAST)
    row = board[board.loss == "rkl"].iloc[0]
    assert row.align_correct - row.align_incorrect > 0.2  # the pooled difference mixes easy and hard questions
    assert row.ok_bad_questions == 10 and abs(row.ok_minus_bad) < 0.15
    assert row.ok_minus_bad_lo < 0 < row.ok_minus_bad_hi and row.p_ok_minus_bad > 0.05
    assert row.ok_bad_verdict == "inconclusive"


def test_rank_groups_from_the_pairs():
    rng = np.random.default_rng(4)
    rows = []
    for q in range(20):
        for pos in range(3):
            noise = rng.normal(0, 0.05)
            for teacher, level in (("best", 0.6), ("close", 0.58), ("worst", 0.0)):
                rows.append(node_row(TASK, STUDENT, teacher, f"q{q}", 0, pos,
                                     **{f"align_{l}": level + noise + rng.normal(0, 0.05) for l in TEACHER_LOSSES}))
    board = build(pd.DataFrame(rows), options=FAST)
    rkl = board.table[board.table.loss == "rkl"].set_index("teacher")
    assert rkl.loc["best", "group"] == "a" and rkl.loc["worst", "group"] == "b"
    assert "a" in rkl.loc["close", "group"]
    assert set(rkl.loc["worst", "behind"].split(", ")) == {"best", "close"}
    assert rkl.loc["best", "behind"] == ""


def test_small_n_gives_no_interval_and_no_verdict():
    rows = [node_row(TASK, STUDENT, teacher, f"q{q}", r, 0, rollout_correct=bool(r),
                     **{f"align_{l}": (0.9 if teacher == "A" else -0.9) + 0.01 * q for l in LOSS_NAMES})
            for teacher in ("A", "B") for q in range(6) for r in range(2)]
    board = build(pd.DataFrame(rows), options=FAST)
    assert board.table.walign_lo.isna().all() and board.table.ok_minus_bad_lo.isna().all()
    assert (board.pairs.verdict == "not tested").all() and (board.table.behind == "").all()
    assert board.pairs.p_holm.isna().all()  # out of the Holm family
    assert (board.table[board.table.loss != "grpo"].group == "not tested").all()
    assert (board.table[board.table.loss != "grpo"].ok_bad_verdict == "too few questions").all()


def test_zero_informative_gives_nan_not_error():
    rows = [node_row(TASK, STUDENT, DEMO, "q0", 0, p, informative=False,
                     **{f"align_{n}": math.nan for n in LOSS_NAMES}) for p in range(3)]
    board = leaderboard(pd.DataFrame(rows), options=FAST)
    assert len(board) == 5 and (board.informative == 0).all() and (board.nodes == 3).all()
    for name in ("align", "align_correct", "walign", "pos_frac", "zero_d", "ok_minus_bad"):
        assert board[name].isna().all(), name
    records = json.loads(format_table(board, "json"))
    assert records[0]["align"] is None and records[0]["informative"] == 0


def test_empty_nodes_table():
    board = leaderboard(pd.DataFrame(columns=NODE_SCHEMA.names))
    assert board.empty and list(board.columns)[:4] == ["task", "student", "teacher", "loss"]


def test_extra_column_spec(run_dir):
    extra = Column("n_questions_informative", lambda cell: len(set(cell.question_ids)))
    board = leaderboard(load_run(run_dir)[0], columns=[*COLUMNS, extra], options=FAST)
    assert board.columns[-1 - len(COMPARISON_COLUMNS)] == "n_questions_informative"
    grpo_questions = pd.DataFrame(synthetic_rows()).query("teacher == @SELF and informative and grpo_advantage != 0")
    assert set(board.n_questions_informative) == {0, 10, 12, grpo_questions.question_id.nunique()}
    plain = leaderboard(load_run(run_dir)[0], columns=[extra], options=FAST)
    assert list(plain.columns) == ["task", "student", "teacher", "loss", "n_questions_informative"]


def test_accuracy_from_run_dir(run_dir):
    assert leaderboard(load_run(run_dir)[0], options=FAST).accuracy.isna().all()
    # the one schema of `opd accuracy --out` (harness.reports.accuracy_report; its round trip: test_accuracy_report.py)
    report = {"config": {"task": TASK, "student": STUDENT}, "rows": [
        {"condition": "student", "accuracy": 0.25}, {"condition": DEMO, "accuracy": 0.75},
        {"condition": SELF, "accuracy": 0.5}]}
    write_json(report, run_dir / "accuracy.json")
    board = leaderboard(load_run(run_dir)[0], options=FAST)
    assert (board[board.teacher == DEMO].accuracy == 0.75).all()
    assert (board[board.teacher == SELF].accuracy == 0.5).all()
    assert board[board.teacher == REFERENCE_TEACHER].accuracy.isna().all()
    other_student = {**report, "config": {"task": TASK, "student": "another"}}
    board = leaderboard(load_run(run_dir)[0], options=FAST, accuracy=other_student)
    assert board.accuracy.isna().all()


def test_seed_makes_the_table_reproducible(run_dir):
    nodes = load_run(run_dir)[0]
    one = build(nodes, options=stats.Options(seed=1, permutations=300))
    two = build(nodes, options=stats.Options(seed=1, permutations=300))
    pd.testing.assert_frame_equal(one.table, two.table)
    pd.testing.assert_frame_equal(one.pairs, two.pairs)


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


# ---------------------------------------------------------------- opd leaderboard flags


def test_cli_pairs_in_every_format_full_precision(run_dir, capsys):
    from harness.cli.main import main

    argv = ["leaderboard", str(run_dir), "--seed", "3", "--permutations", "500"]
    assert main([*argv, "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    direct = build(load_run(run_dir)[0], options=stats.Options(seed=3, permutations=500))
    assert len(table) == len(direct.table)
    # json keeps every digit
    for record, (_, row) in zip(table, direct.table.iterrows()):
        assert record["walign"] == (None if math.isnan(row.walign) else row.walign)
    assert main([*argv, "--format", "json", "--pairs"]) == 0
    pair_records = json.loads(capsys.readouterr().out)
    assert pair_records and set(PAIR_COLUMNS) <= set(pair_records[0])
    assert [r["p_holm"] for r in pair_records] == pytest.approx(list(direct.pairs.p_holm))
    assert main([*argv, "--format", "csv", "--pairs", "--loss", "jsd"]) == 0
    back = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert set(back.loss) == {"jsd"} and len(back) == 1  # DEMO vs WRONG
    jsd = direct.pairs[direct.pairs.loss == "jsd"].iloc[0]
    assert back["diff"].iloc[0] == jsd["diff"]  # csv keeps full precision too
    for fmt in ("md", "latex", "rich"):
        assert main([*argv, "--format", fmt, "--pairs"]) == 0
        assert "self:correct-wrong" in capsys.readouterr().out
    assert main([*argv, "--loss", "jsd", "--loss", "grpo", "--loss", "jsd", "--format", "json"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert {r["loss"] for r in chosen} == {"jsd", "grpo"} and len(chosen) == 4
    # selected rows keep the full table's values (q_ok_minus_bad is BH-corrected over every row of a task x student)
    assert chosen == [r for r in table if r["loss"] in ("jsd", "grpo")]


def test_cli_defaults_are_the_stats_defaults(run_dir, monkeypatch, capsys):
    import harness.reports.leaderboard as board
    from harness.cli.main import main

    seen = {}

    def spy(nodes, **settings):
        seen.update(settings)
        return build(nodes, options=FAST)

    monkeypatch.setattr(board, "build", spy)
    assert main(["leaderboard", str(run_dir), "--format", "csv"]) == 0
    capsys.readouterr()
    assert seen["options"] == stats.Options(seed=0, resamples=stats.RESAMPLES, permutations=stats.PERMUTATIONS)


def test_check_losses_refuses_a_registered_loss_without_records():
    from harness.api.registry import RegistryError
    from harness.cli.options import check_losses
    from harness.diagnostic.losses import LOSSES, resolve_loss

    assert check_losses(["rkl", "grpo", "rkl"]) == ("rkl", "grpo")
    LOSSES.add("test-plugin-loss", lambda: resolve_loss("rkl"), "test fake")
    try:
        with pytest.raises(RegistryError, match=r"'test-plugin-loss' cannot be used here: run records hold "
                                                r"alignments only for the built-in losses\. Choose --loss among rkl"):
            check_losses(["test-plugin-loss"])
    finally:
        LOSSES.remove("test-plugin-loss")


# ---------------------------------------------------------------- issue 30: like with like


def _align(value):
    return {f"align_{name}": value for name in LOSS_NAMES}


def test_a_teacher_on_easy_questions_only_does_not_lead():
    """Twelve easy questions (every teacher aligns ~0.8) and twelve hard ones (~0.0). E exists on the easy ones only
    and aligns 0.7 there, B 0.8 on every question, C 0.75: E's walign over its own questions (0.7) beats B's over all
    of its (0.4), but on the nodes they share B is ahead, and the paired test says so; the leader is B."""
    rng = np.random.default_rng(0)
    rows = []
    for q in range(24):
        easy = q < 12
        for pos in range(3):
            noise = rng.normal(0, 0.02)
            for teacher, level in (("B", 0.8), ("C", 0.75), ("E", 0.7)):
                if teacher == "E" and not easy:
                    continue
                value = (level if easy else level - 0.8) + noise + rng.normal(0, 0.01)
                rows.append(node_row(TASK, STUDENT, teacher, f"q{q}", 0, pos, **_align(value)))
    frame = pd.DataFrame(rows)
    board = build(frame, options=FAST)
    rkl = board.table[board.table.loss == "rkl"].set_index("teacher")
    assert rkl.loc["E", "walign"] > rkl.loc["B", "walign"]  # the old leader by own-questions walign
    assert list(board.table[board.table.loss == "rkl"].teacher) == ["B", "C", "E"]  # ordered by paired rank
    assert rkl.loc["B", "rank"] == 1 and rkl.loc["B", "group"] == "a" and "a" not in rkl.loc["E", "group"]
    assert "B" in rkl.loc["E", "behind"].split(", ")
    shared = frame[frame.question_id.isin([f"q{q}" for q in range(12)])]
    for teacher in ("B", "C", "E"):  # walign on the nodes all three share: the easy questions
        part = shared[shared.teacher == teacher]
        assert rkl.loc[teacher, "walign_shared"] == pytest.approx(float(part.align_rkl.mean()))
        assert rkl.loc[teacher, "shared_questions"] == 12


def test_leader_candidates_are_ordered_on_the_questions_they_share():
    """Two teachers no test separates (noise only): the leader is the one higher on their shared nodes, even when the
    other has the higher walign over its own questions (it also has easy questions the first lacks)."""
    rows = []
    for q in range(12):
        for pos in range(2):
            # A: 0.50 / B: 0.49 on the shared questions, sign-alternating noise (no test can separate them)
            noise = 0.3 if q % 2 else -0.3
            rows.append(node_row(TASK, STUDENT, "A", f"q{q}", 0, pos, **_align(0.50 + noise)))
            rows.append(node_row(TASK, STUDENT, "B", f"q{q}", 0, pos, **_align(0.49 - noise)))
    for q in range(12, 20):  # only B: easy questions
        rows.append(node_row(TASK, STUDENT, "B", f"q{q}", 0, 0, **_align(0.95)))
    board = build(pd.DataFrame(rows), options=FAST)
    rkl = board.table[board.table.loss == "rkl"].set_index("teacher")
    assert rkl.loc["B", "walign"] > rkl.loc["A", "walign"]
    assert board.pairs[board.pairs.loss == "rkl"].verdict.iloc[0] == "inconclusive"
    assert rkl.loc["A", "rank"] == 1 and rkl.loc["B", "rank"] == 2 and rkl.loc["A", "group"] == rkl.loc["B", "group"]
    assert rkl.loc["A", "walign_shared"] == pytest.approx(0.50) and rkl.loc["B", "walign_shared"] == pytest.approx(0.49)


def test_pairs_on_fewer_than_ten_shared_questions_are_not_tested():
    """F shares 6 questions with the others: its pairs are "not tested" (no Holm p, out of the family: Holm over the
    one tested pair is its raw p), F is unranked with group "not tested", and the others list it as untested."""
    rng = np.random.default_rng(1)
    rows = []
    for q in range(14):
        for pos in range(2):
            for teacher, level in (("A", 0.6), ("B", 0.0), ("F", 0.3)):
                if teacher == "F" and q >= 6:
                    continue
                rows.append(node_row(TASK, STUDENT, teacher, f"q{q}", 0, pos, **_align(level + rng.normal(0, 0.1))))
    board = build(pd.DataFrame(rows), options=FAST)
    family = board.pairs[board.pairs.loss == "rkl"]
    with_f = family[(family.teacher == "F") | (family.other == "F")]
    assert len(with_f) == 2 and (with_f.verdict == "not tested").all() and with_f.p_holm.isna().all()
    assert with_f.p.notna().all()  # the test's p is shown, it is just no claim
    tested = family[(family.teacher != "F") & (family.other != "F")].iloc[0]
    assert tested.p_holm == pytest.approx(tested.p) and tested.verdict == "ahead"
    rkl = board.table[board.table.loss == "rkl"].set_index("teacher")
    assert rkl.loc["F", "group"] == "not tested" and math.isnan(rkl.loc["F", "rank"])
    assert rkl.loc["A", "untested"] == "F" and set(rkl.loc["F", "untested"].split(", ")) == {"A", "B"}
    assert rkl.loc["A", "group"] == "a" and rkl.loc["B", "group"] == "b"


def test_first_token_nodes_make_the_contrast_not_testable():
    """Every node at position 0, where all rollouts share the prompt: align_correct / align_incorrect are still
    reported, ok_minus_bad has no estimate, interval, test or MDE, and its verdict is "not testable"."""
    rng = np.random.default_rng(2)
    rows = [node_row(TASK, STUDENT, DEMO, f"q{q}", r, 0, prefix_shared=True, rollout_correct=r < 2,
                     **_align(float(rng.normal(0.2 if r < 2 else -0.2, 0.1))))
            for q in range(15) for r in range(4)]
    row = leaderboard(pd.DataFrame(rows), options=FAST).query("loss == 'rkl'").iloc[0]
    assert row.align_correct > 0.1 and row.align_incorrect < -0.1 and row.correct_questions == 15
    assert row.ok_bad_questions == 0 and row.ok_bad_verdict == "not testable"
    for name in ("ok_minus_bad", "ok_minus_bad_lo", "ok_minus_bad_hi", "p_ok_minus_bad", "mde_ok_minus_bad"):
        assert math.isnan(row[name]), name
    # the same nodes past the divergence: testable, and the contrast is found
    past = [dict(r, prefix_shared=False) for r in rows]
    row = leaderboard(pd.DataFrame(past), options=FAST).query("loss == 'rkl'").iloc[0]
    assert row.ok_bad_questions == 15 and row.ok_bad_verdict == "ok > bad"


def test_only_nodes_past_the_divergence_enter_the_contrast():
    """Per question: shared nodes (position 0) carry +0.9 on incorrect paths, past nodes a +0.3 correct advantage;
    the contrast must be the past nodes' by pandas, and unknown prefix status counts as shared."""
    rows = []
    for q in range(12):
        for r in range(4):
            correct = r % 2 == 0
            rows.append(node_row(TASK, STUDENT, DEMO, f"q{q}", r, 0, rollout_correct=correct, prefix_shared=True,
                                 **_align(0.0 if correct else 0.9)))
            for pos in (1, 2):
                rows.append(node_row(TASK, STUDENT, DEMO, f"q{q}", r, pos, rollout_correct=correct,
                                     prefix_shared=False if pos == 1 else None,
                                     **_align((0.3 if correct else 0.0) + 0.01 * q + 0.02 * r)))
    frame = pd.DataFrame(rows)
    row = leaderboard(frame, options=FAST).query("loss == 'rkl'").iloc[0]
    used = frame[frame.prefix_shared.eq(False)]
    means = used.groupby(["question_id", "rollout_correct"]).align_rkl.mean().unstack()
    assert row.ok_minus_bad == pytest.approx(float((means[True] - means[False]).mean()))
    assert row.ok_bad_questions == 12 and row.ok_bad_nodes == len(used)


def test_unparsed_paths_are_a_third_outcome():
    """Unparsed paths (graded incorrect, no answer found) are counted in align_unparsed, never in align_incorrect,
    and enter neither side of the contrast."""
    rng = np.random.default_rng(5)
    rows = []
    for q in range(12):
        for r, (correct, unparsed, level) in enumerate(((True, False, 0.4), (False, False, 0.1), (False, True, -0.8))):
            for pos in (1, 2):
                rows.append(node_row(TASK, STUDENT, DEMO, f"q{q}", r, pos, rollout_correct=correct,
                                     rollout_unparsed=unparsed, **_align(float(level + rng.normal(0, 0.05)))))
    frame = pd.DataFrame(rows)
    row = leaderboard(frame, options=FAST).query("loss == 'rkl'").iloc[0]
    for side, part in (("correct", frame[frame.rollout_correct]),
                       ("incorrect", frame[~frame.rollout_correct & ~frame.rollout_unparsed]),
                       ("unparsed", frame[frame.rollout_unparsed])):
        assert row[f"align_{side}"] == pytest.approx(float(part.align_rkl.mean())), side
        assert row[f"{side}_nodes"] == len(part)
    per_q = frame[~frame.rollout_unparsed].groupby(["question_id", "rollout_correct"]).align_rkl.mean().unstack()
    assert row.ok_minus_bad == pytest.approx(float((per_q[True] - per_q[False]).mean()))


def test_walign_by_gold_label_shows_a_label_driven_teacher():
    """A BoolQ-like cell (gold yes / no) where teacher L aligns +0.8 on gold-"no" questions and -0.7 on gold-"yes"
    ones: by_gold reports each label's walign, interval and n (pandas by hand); a numeric gold is not categorical."""
    rng = np.random.default_rng(6)
    rows = []
    for q in range(30):
        gold = "no" if q % 2 == 0 else "yes"
        for pos in range(2):
            weight = float(rng.uniform(0.5, 1.5))
            rows.append(node_row(TASK, STUDENT, "L", f"q{q}", 0, pos, gold=gold, ideal_norm=weight,
                                 **_align((0.8 if gold == "no" else -0.7) + float(rng.normal(0, 0.05)))))
    frame = pd.DataFrame(rows)
    board = build(frame, options=FAST)
    gold = board.gold[board.gold.loss == "rkl"].set_index("gold")
    for label in ("no", "yes"):
        part = frame[frame.gold == label]
        assert gold.loc[label, "walign"] == pytest.approx(float((part.align_rkl * part.ideal_norm).sum()
                                                                / part.ideal_norm.sum()))
        assert gold.loc[label, "questions"] == part.question_id.nunique()
        assert gold.loc[label, "walign_lo"] < gold.loc[label, "walign"] < gold.loc[label, "walign_hi"]
    assert gold.loc["no", "walign"] > 0.7 and gold.loc["yes", "walign"] < -0.6
    text = board.table.query("loss == 'rkl'").walign_by_gold.iloc[0]
    assert text == f"no {gold.loc['no', 'walign']:.2f} (15 q) · yes {gold.loc['yes', 'walign']:.2f} (15 q)"
    numeric = frame.assign(gold=frame.question_id)  # one gold per question: not categorical
    assert build(numeric, options=FAST).gold.empty


def test_a_p_value_on_its_floor_prints_as_an_upper_bound():
    """A clear lead on 30 questions: no sign pattern of 200 random ones reaches it, so p = 1/201, at its floor; the
    pair says so and --pairs prints "<=" before its Holm p."""
    from rich.console import Console

    from harness.render.tables import print_pairs

    rng = np.random.default_rng(7)
    rows = [node_row(TASK, STUDENT, teacher, f"q{q}", 0, 0, **_align(level + float(rng.normal(0, 0.05))))
            for q in range(30) for teacher, level in (("A", 0.8), ("B", 0.0))]
    board = build(pd.DataFrame(rows), options=stats.Options(permutations=200, resamples=50))
    pair = board.pairs[board.pairs.loss == "rkl"].iloc[0]
    assert pair.p == pytest.approx(1 / 201) and pair.p_at_floor and pair.verdict == "ahead"
    console = Console(width=200, record=True)
    print_pairs(board.pairs[board.pairs.loss == "rkl"], console=console)
    assert "<= 0.00498" in console.export_text()
