"""results/STUDY.md cannot drift from its data: the write-up is recomputed from results/study/'s compact files, and
its headline numbers are checked against independent pandas arithmetic on the same files."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT / "results" / "study"

pytestmark = pytest.mark.skipif(not (STUDY_DIR / "nodes.parquet").is_file(), reason="no study data committed")


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study_build", STUDY_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(study):
    return study.load(STUDY_DIR)


@pytest.fixture(scope="module")
def numbers(study, data):
    return study.compute(*data)


def test_write_up_is_what_the_compact_files_give(study, numbers):
    figures = study.figure_names(STUDY_DIR)
    assert (ROOT / "results" / "STUDY.md").read_text() == study.render(numbers, figures), (
        "results/STUDY.md differs from what results/study/ gives: run `python results/study/build.py write`")
    for name in figures:
        assert (STUDY_DIR / name).is_file()


def _defined(nodes, row):
    """The node rows of a leaderboard row whose alignment is defined (informative, context built, finite logits,
    finite alignment), with that alignment as column ``a``."""
    cell = nodes[(nodes.task == row.task) & (nodes.student == row.student) & (nodes.teacher == row.teacher)]
    align = cell[f"align_{row.loss}"].astype(float)
    defined = (cell.informative.astype(bool) & cell.context_ok.astype(bool) & ~cell.logits_finite.eq(False)
               & np.isfinite(align))
    return cell[defined].assign(a=align[defined])


def test_walign_of_every_leaderboard_row_by_hand(data, numbers):
    """walign = sum(||g*|| align) / sum(||g*||) over the nodes with a defined alignment (METHOD), by plain pandas;
    teacher rows (the grpo reference row has no teacher)."""
    nodes = data[0]
    board = numbers["board"]
    checked = 0
    for row in board[board["walign"].notna() & board["teacher"].isin(nodes.teacher)].itertuples():
        frame = _defined(nodes, row)
        expected = float((frame.ideal_norm * frame.a).sum() / frame.ideal_norm.sum())
        assert row.walign == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert row.align_questions == frame.question_id.nunique()
        checked += 1
    assert checked > 0


def test_walign_on_shared_questions_by_hand(data, numbers):
    """walign_shared: each ranked teacher's walign over the nodes every ranked teacher of its (task, student, loss)
    has an alignment at (the second population the leaderboards show), by plain pandas."""
    nodes = data[0]
    board = numbers["board"]
    checked = 0
    ranked = board[board["rank"].notna() & board["teacher"].isin(nodes.teacher)]
    for (task, student, loss), family in ranked.groupby(["task", "student", "loss"]):
        frames = {r.teacher: _defined(nodes, r).set_index(["question_id", "rollout_id", "position"])
                  for r in family.itertuples()}
        shared = set.intersection(*(set(frame.index) for frame in frames.values()))
        for r in family.itertuples():
            frame = frames[r.teacher].loc[sorted(shared)]
            assert r.walign_shared == pytest.approx(float((frame.ideal_norm * frame.a).sum() / frame.ideal_norm.sum()),
                                                    rel=1e-9, abs=1e-12)
            assert r.shared_questions == len({key[0] for key in shared})
            checked += 1
    assert checked > 0


def test_ok_minus_bad_by_hand(data, numbers):
    """ok_minus_bad: per question, mean alignment on correct paths minus on incorrect ones over the nodes known to
    lie past the divergence (prefix_shared False; unparsed paths on neither side), averaged over questions that have
    both (METHOD); not testable, with no estimate and no MDE, where no question has such nodes."""
    nodes = data[0]
    board = numbers["board"]
    checked = 0
    for row in board[board["teacher"].isin(nodes.teacher) & board.walign.notna()].itertuples():
        frame = _defined(nodes, row)
        past = frame.prefix_shared.eq(False) if "prefix_shared" in frame else False
        unparsed = frame.rollout_unparsed.eq(True) if "rollout_unparsed" in frame else False
        frame = frame[past & frame.rollout_correct.notna() & ~(frame.rollout_correct.eq(False) & unparsed)]
        means = frame.groupby(["question_id", "rollout_correct"])["a"].mean().unstack()
        means = means.dropna() if {True, False} <= set(means.columns) else means.iloc[0:0]
        assert row.ok_bad_questions == len(means)
        if len(means):
            assert row.ok_minus_bad == pytest.approx(float((means[True] - means[False]).mean()), rel=1e-9,
                                                     abs=1e-12)
        else:
            assert math.isnan(row.ok_minus_bad) and math.isnan(row.mde_ok_minus_bad)
            assert row.ok_bad_verdict == "not testable"
        checked += 1
    assert checked > 0


def test_the_write_up_renders_as_markdown_tables(study, numbers):
    """Every table row has as many cells as its header: a '|' inside a cell is escaped."""
    text = study.render(numbers, study.figure_names(STUDY_DIR))
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = len([c for c in line.replace("\\|", "").split("|")]) - 2
        header = cells if header is None else header
        assert cells == header, line


def test_study_files_stay_small():
    size = sum(path.stat().st_size for path in STUDY_DIR.rglob("*") if path.is_file())
    assert size < 6 * 2**20, f"results/study holds {size / 2**20:.1f} MB"


def test_answer_mix_by_counting(data, numbers):
    """The share of the student's own answers extracting to each answer, and of questions with that gold, counted
    one by one from the reports."""
    accuracy = data[2]
    if not accuracy:
        pytest.skip("no accuracy reports")
    mix = numbers["answer_mix"]
    for name, report in accuracy.items():
        alone = [entry for entry in report["questions"] if entry["condition"] == "student"]
        answers = [a["extracted"] or "unparsed" for entry in alone for a in entry["answers"] if a is not None]
        rows = mix[mix.report == name]
        assert sorted(rows.answer) == sorted(set(answers))
        for row in rows.itertuples():
            assert row.share == pytest.approx(answers.count(row.answer) / len(answers), abs=1e-12)
            golds = sum(entry["gold"] == row.answer for entry in alone)
            assert row.gold_share == pytest.approx(golds / len(alone), abs=1e-12)


def test_accuracy_rows_from_the_answers(data, numbers):
    """Each context's accuracy is the mean over questions of its pass rate, from the graded answers kept in the
    reports; its delta the mean paired difference from the student's own."""
    accuracy = data[2]
    if not accuracy:
        pytest.skip("no accuracy reports")
    table = numbers["accuracy"]
    for name, report in accuracy.items():
        rates: dict[str, dict[str, float]] = {}
        for entry in report["questions"]:
            answers = [a for a in entry["answers"] if a is not None]
            if answers:
                rates.setdefault(entry["condition"], {})[entry["question_id"]] = (
                    sum(bool(a["correct"]) for a in answers) / len(answers))
        for row in table[table.report == name].itertuples():
            per_question = rates.get(row.condition, {})
            if not per_question:
                assert row.accuracy is None or math.isnan(row.accuracy)
                continue
            assert row.accuracy == pytest.approx(np.mean(list(per_question.values())), abs=1e-12)
            assert row.questions == len(per_question)


# ---------------------------------------------------------------- the compact file recomputes the alignments


def _directions(row) -> dict[str, np.ndarray]:
    """Every loss's descent direction on support + tail (METHOD's table), from the compact columns alone; each
    direction's components over the full vocabulary sum to 0, so the tail entry is minus the support's sum."""
    logp = np.asarray(row["student_logprobs"], float)
    p = np.exp(logp)
    support = list(row["support_token_ids"])
    e_y = (np.asarray(support) == row["sampled_token_id"]).astype(float)
    out = {"grpo": row["grpo_advantage"] * (e_y - p)}
    if row["teacher_logprobs"] is not None:
        logq = np.asarray(row["teacher_logprobs"], float)
        q, l = np.exp(logq), logp - logq
        mixture = 0.5 * p + 0.5 * q  # jsd, beta = 0.5 (the study's and the default)
        out.update(rkl=-p * (l - row["kl_student_teacher"]), fkl=q - p,
                   jsd=-0.5 * p * (np.log(p / mixture) - row["jsd_rbar"]),
                   sampled=-l[support.index(row["sampled_token_id"])] * (e_y - p))
    return {name: np.append(d, -d.sum()) for name, d in out.items()}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.sqrt(a @ a) * np.sqrt(b @ b))
    return float(a @ b) / norms if norms > 0 else math.nan


def _recompute(compact, temperature: float) -> int:
    """S_hat, g* (tail entry 0) and every alignment of every row, compared with the stored ones; rows checked."""
    checked = 0
    for row in compact.to_dict("records"):
        s_hat = np.asarray(row["succ_correct"], float) / np.asarray(row["succ_trials"], float)
        # the sampling policy p^T on the support, up to its normalisation (which no cosine sees)
        p_t = np.exp(np.asarray(row["student_logprobs"], float) / temperature)
        ideal = np.append(p_t * (s_hat - p_t @ s_hat / p_t.sum()), 0.0)
        if s_hat.max() == s_hat.min():
            ideal[:] = 0.0
        stored = np.asarray(row["ideal_grad"], float)
        assert _cosine(ideal, stored) == pytest.approx(1.0, abs=1e-9) or not ideal.any() and not stored.any()
        assert bool(row["informative"]) == bool(ideal.any())
        for name, d in _directions(row).items():
            if row.get("teacher") == "self" and name != "grpo":  # the control: q = p, no teacher direction
                assert math.isnan(row[f"align_{name}"]), name  # (only rounding noise would be left to align)
                continue
            expected = _cosine(ideal, d)
            assert row[f"align_{name}"] == pytest.approx(expected, abs=1e-7, nan_ok=True), name
            checked += math.isfinite(expected)
    return checked


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny real run (random-weight student, an external and a context teacher, the control), written as a run
    directory ``<root>/test-parity/tiny-random``; returns the root."""
    import json

    from harness.api.progress import NoProgress
    from harness.api.task import resolve_task
    from harness.diagnostic.losses import resolve_loss
    from harness.diagnostic.question import Participants, Settings, diagnose_question
    from harness.sampling.models import load_model
    from harness.sampling.teacher import resolve_teacher
    from harness.storage.records import LOSS_NAMES, NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table

    student = load_model("tiny-random", "cpu")
    teachers = []
    for spec in ("model:tiny-random:1", "self:correct-demo", "self"):
        teacher = resolve_teacher(spec)
        teachers.append((teacher, student if teacher.model is None else load_model(teacher.model, "cpu")))
    who = Participants(resolve_task("test-parity"), student, "tiny-random", teachers,
                       [resolve_loss(name) for name in LOSS_NAMES], seed=5)
    settings = Settings(rollouts=4, continuations=2, max_new_tokens=8)
    node_rows, question_rows = [], []
    for question in who.task.load(None, limit=2):
        result = diagnose_question(question, who, settings, NoProgress())
        node_rows += result.node_rows
        question_rows += result.question_rows
    root = tmp_path_factory.mktemp("suite")
    run_dir = root / "test-parity" / "tiny-random"
    write_table(rows_to_table(node_rows, NODE_SCHEMA), run_dir / "nodes.parquet")
    write_table(rows_to_table(question_rows, QUESTION_SCHEMA), run_dir / "questions.parquet")
    (run_dir / "run.json").write_text(json.dumps({"config": {"task": "test-parity", "student": "tiny-random",
                                                             "settings": {"temperature": 1.0}}}))
    return root


@pytest.fixture(scope="module")
def compact_from_a_run(tmp_path_factory, study, tiny_run):
    """The tiny run collected into a compact file the way the study's runs are."""
    out = tmp_path_factory.mktemp("compact")
    study.collect(tiny_run, None, out)
    return study.load(out)[0]


def test_a_collected_compact_file_recomputes_every_alignment(study, compact_from_a_run):
    """The compact file carries every column S_hat, g* and the alignments need, and recomputing them from those
    columns alone (numpy, not harness.diagnostic.alignment) gives the stored values."""
    assert set(study.RECOMPUTE_COLUMNS) <= set(compact_from_a_run.columns)
    assert {"prefix_shared", "rollout_unparsed", "gold"} <= set(compact_from_a_run.columns)
    assert _recompute(compact_from_a_run, temperature=1.0) > 20


def test_the_committed_compact_file_recomputes_where_it_can(study, data, numbers):
    """The cells whose records hold the recompute columns (the chunked ones) recompute every alignment from them;
    for each setting, the columns its cells lack entirely (collected before they were kept) are the ones the
    write-up names instead of using them."""
    nodes = data[0]
    text = (ROOT / "results" / "STUDY.md").read_text()
    where = numbers["where"]
    for setting, status in numbers["records_by_setting"].items():
        cells = set(zip(where[where.setting == setting].task, where[where.setting == setting].student))
        part = nodes[[cell in cells for cell in zip(nodes.task, nodes.student)]]
        lacking = [c for c in study.RECOMPUTE_COLUMNS if c not in part or part[c].isna().all()]
        assert status["recompute"] == lacking
        assert all(f"`{c}`" in text for c in lacking)
    carried = nodes[nodes.support_token_ids.notna()] if "support_token_ids" in nodes else nodes.iloc[0:0]
    temperatures = {(r["config"]["task"], r["config"]["student"]): r["config"]["settings"]["temperature"]
                    for r in data[1]}
    for (task, student), cell in carried.groupby(["task", "student"]):
        assert _recompute(cell, temperature=temperatures[(task, student)]) > 0


# ---------------------------------------------------------------- the new numbers by hand (issue 31, item 3)


def _unique_nodes(cell):
    return cell.drop_duplicates(["question_id", "rollout_id", "position"])


def test_where_the_nodes_are_by_hand(data, numbers):
    """Per cell: informative nodes counted once whatever the teacher, the share at position 0 and numpy's quartiles
    of depth_norm; the setting from the task's pooled share (more than half at position 0: direct-answer); and the
    reasoning cells' In short line states those quartiles."""
    nodes = data[0]
    where = numbers["where"].set_index(["task", "student"])
    text = (ROOT / "results" / "STUDY.md").read_text()
    for (task, student), cell in nodes.groupby(["task", "student"]):
        informative = _unique_nodes(cell)
        informative = informative[informative.informative.astype(bool)]
        row = where.loc[(task, student)]
        assert row.informative == len(informative)
        assert row.first_token == int((informative.position == 0).sum())
        q1, q2, q3 = np.quantile(informative.depth_norm.astype(float), [0.25, 0.5, 0.75])
        assert (row.q1, row["median"], row.q3) == pytest.approx((q1, q2, q3), abs=1e-12)
        pooled = nodes[nodes.task == task].drop_duplicates(["student", "question_id", "rollout_id", "position"])
        pooled = pooled[pooled.informative.astype(bool)]
        assert row.setting == ("direct-answer contrast" if (pooled.position == 0).mean() > 0.5 else "reasoning")
        if row.setting == "reasoning":
            assert f"depth_norm quartiles {q1:.2f} / {q2:.2f} / {q3:.2f}" in text


def test_shared_top_k_mass_by_hand(data, numbers):
    """Per (task, student, teacher): mean and median of topk_shared_mass over its nodes, the mean paired excess
    over the student's own mass (the self row) at the same nodes, and Spearman with the rkl alignment over the
    nodes with a defined alignment (scipy), computed from the compact file."""
    from scipy.stats import spearmanr

    nodes = data[0]
    table = numbers["shared_mass"].set_index(["task", "student", "teacher"])
    key = ["question_id", "rollout_id", "position"]
    checked = 0
    for (task, student, teacher), rows in nodes.groupby(["task", "student", "teacher"]):
        rows = rows[np.isfinite(rows.topk_shared_mass.astype(float))]
        if not len(rows):
            continue
        row = table.loc[(task, student, teacher)]
        mass = rows.topk_shared_mass.astype(float)
        assert row["mean"] == pytest.approx(mass.mean(), abs=1e-12)
        assert row["median"] == pytest.approx(float(np.median(mass)), abs=1e-12)
        own = nodes[(nodes.task == task) & (nodes.student == student) & (nodes.teacher == "self")]
        paired = rows.merge(own[key + ["topk_shared_mass"]], on=key, suffixes=("", "_own"))
        if len(paired):
            assert row.excess == pytest.approx(float((paired.topk_shared_mass - paired.topk_shared_mass_own).mean()),
                                               abs=1e-12)
        defined = rows[rows.informative.astype(bool) & rows.context_ok.astype(bool) & ~rows.logits_finite.eq(False)
                       & np.isfinite(rows.align_rkl.astype(float))]
        if teacher != "self" and len(defined) > 2 and defined.topk_shared_mass.nunique() > 1:
            expected = spearmanr(defined.topk_shared_mass.astype(float), defined.align_rkl.astype(float)).statistic
            assert row.rho == pytest.approx(float(expected), abs=1e-9)
            assert row.rho_questions == defined.question_id.nunique()
        checked += 1
    assert checked > 0


def test_cost_per_question_by_hand(data, numbers):
    """Minutes and generated tokens per question from every session in runs.json, over the questions diagnosed;
    the rollouts' response tokens per question from the per-rollout file; informative nodes per question."""
    nodes, runs, _, rollouts = data
    table = numbers["per_question"].set_index(["task", "student"])
    for run in runs:
        task, student = run["config"]["task"], run["config"]["student"]
        questions = run["counts"]["questions"]
        sessions = run.get("sessions") or [{"total_s": run["timings"]["total_s"],
                                            "generated_tokens": run["counts"]["generated_tokens_this_session"]}]
        row = table.loc[(task, student)]
        assert row.minutes == pytest.approx(sum(s["total_s"] for s in sessions) / 60 / questions, rel=1e-12)
        assert row.generated == pytest.approx(sum(s["generated_tokens"] for s in sessions) / questions, rel=1e-12)
        cell = nodes[(nodes.task == task) & (nodes.student == student)]
        assert row.informative == pytest.approx(_unique_nodes(cell).informative.astype(bool).sum() / questions)
        own = rollouts[(rollouts.task == task) & (rollouts.student == student)]
        if len(own):
            assert own.question_id.nunique() == questions  # the per-rollout file covers every question diagnosed
            assert row.response == pytest.approx(own.response_tokens.sum() / questions, rel=1e-12)
        else:
            assert math.isnan(row.response)


def test_student_accuracy_from_the_rollouts_by_hand(data, numbers):
    """Per chunked cell: the mean over questions of the share of correct rollouts, its Wilson interval (closed
    form, z = 1.96), and the unparsed share (graded wrong with no extracted answer), from the per-rollout file."""
    rollouts = data[3]
    if not len(rollouts):
        pytest.skip("no per-rollout file merged")
    table = numbers["own_accuracy"].set_index(["task", "student"])
    z = 1.959963984540054
    for (task, student), cell in rollouts.groupby(["task", "student"]):
        rates = cell.groupby("question_id").correct.mean()
        n, p = len(rates), rates.mean()
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        unparsed = (~cell.correct.astype(bool) & ~cell.extracted.map(lambda e: isinstance(e, str) and e != "")
                    ).groupby(cell.question_id).mean().mean()
        row = table.loc[(task, student)]
        assert row.source == "diagnostic rollouts"
        assert (row.questions, row.answers) == (n, len(cell))
        assert row.accuracy == pytest.approx(p, abs=1e-12)
        assert (row.lo, row.hi) == pytest.approx((centre - half, centre + half), abs=1e-9)
        assert row.unparsed == pytest.approx(unparsed, abs=1e-12)


def test_a_chunk_gets_its_per_rollout_file_and_merge_carries_it(tmp_path, study, tiny_run):
    """`build.py chunk` writes nodes, json and the per-rollout file; on a committed chunk without the latter it adds
    only that file (the nodes file stays byte for byte), refuses a run that is not the chunk's, and merge refuses
    a chunk without it, then writes questions.parquet with every rollout once."""
    import json
    import shutil

    import pandas as pd

    from harness.api.errors import ConfigError

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run / "test-parity" / "tiny-random", run_dir)
    meta = {"config": {"task": "test-parity", "student": "tiny-random", "questions": [0, 2], "seed": 0,
                       "teachers": [], "settings": {"temperature": 1.0}}, "status": "complete",
            "counts": {"questions": 2}, "sessions": [{"total_s": 6.0, "generated_tokens": 10}], "code": "c0de"}
    (run_dir / "run.json").write_text(json.dumps(meta))
    out = tmp_path / "study"
    written = study.commit_chunks([run_dir], out)
    chunk = out / "chunks" / "test-parity" / "tiny-random" / "questions-000000-000002"
    sibling = chunk.parent / "questions-000000-000002.questions.parquet"
    assert sorted(written) == sorted([chunk.with_suffix(".parquet"), chunk.with_suffix(".json"), sibling])
    questions = pd.read_parquet(run_dir / "questions.parquet")
    rows = pd.read_parquet(sibling)
    assert len(rows) == len(questions) and set(study.ROLLOUT_COLUMNS) <= set(rows.columns)
    nodes_bytes = chunk.with_suffix(".parquet").read_bytes()

    sibling.unlink()
    with pytest.raises(ConfigError, match="per-rollout"):
        study.merge_chunks(out)
    assert not (out / "nodes.parquet").exists()
    assert study.commit_chunks([run_dir], out) == [sibling]
    assert chunk.with_suffix(".parquet").read_bytes() == nodes_bytes
    assert study.commit_chunks([run_dir], out) == []  # all there: nothing written

    sibling.unlink()
    (run_dir / "run.json").write_text(json.dumps({**meta, "code": "other"}))
    with pytest.raises(ConfigError, match="not the run"):
        study.commit_chunks([run_dir], out)
    assert not sibling.exists()
    (run_dir / "run.json").write_text(json.dumps(meta))
    study.commit_chunks([run_dir], out)

    study.merge_chunks(out)
    merged = pd.read_parquet(out / "questions.parquet")
    assert len(merged) == len(questions)
    assert sorted(zip(merged.question_id, merged.rollout_id)) == sorted(zip(questions.question_id,
                                                                          questions.rollout_id))
    assert len(pd.read_parquet(out / "nodes.parquet")) == len(pd.read_parquet(chunk.with_suffix(".parquet")))


def test_leader_and_best_context_by_hand(numbers):
    """Per cell: the leader is the rank-1 teacher of the headline leaderboard, the best context the best-ranked
    teacher that is not an external model, none where nothing is ranked; two students' best contexts are `same`
    exactly when they are one teacher, `changes` only where each cell's pair test puts its own ahead."""
    board = numbers["board"]
    board = board[(board.loss == "rkl") & board.walign.notna()]
    cells = numbers["contexts"]["cells"].set_index(["task", "student"])
    for (task, student), group in board.groupby(["task", "student"]):
        ranked = group.dropna(subset=["rank"]).sort_values("rank")
        contexts = ranked[~ranked.teacher.str.startswith("model:")]
        row = cells.loc[(task, student)]
        assert (row.leader if isinstance(row.leader, str) else None) == (ranked.teacher.iloc[0] if len(ranked)
                                                                         else None)
        assert (row.best_context if isinstance(row.best_context, str) else None) == (
            contexts.teacher.iloc[0] if len(contexts) else None)
    pairs = numbers["pairs"]
    pairs = pairs[pairs.loss == "rkl"]
    for r in numbers["contexts"]["changes"].itertuples():
        a, b = cells.loc[(r.task, r.student)].best_context, cells.loc[(r.task, r.other)].best_context
        if not (isinstance(a, str) and isinstance(b, str)):
            assert r.outcome == "not testable"
            continue
        assert (r.outcome == "same") == (a == b)
        if r.outcome == "changes":
            for student, mine, theirs in ((r.student, a, b), (r.other, b, a)):
                cell = pairs[(pairs.task == r.task) & (pairs.student == student)]
                hit = cell[((cell.teacher == mine) & (cell.other == theirs) & (cell.verdict == "ahead"))
                           | ((cell.teacher == theirs) & (cell.other == mine) & (cell.verdict == "behind"))]
                assert len(hit) == 1


def test_reasoning_first_and_the_contrast_labelled_beside_its_tables(data, numbers):
    """The title and In short put the reasoning setting first; every direct-answer leaderboard states its own
    first-token share (counted here from the nodes) right under its heading."""
    nodes = data[0]
    text = (ROOT / "results" / "STUDY.md").read_text()
    where = numbers["where"]
    assert text.startswith("# Study: the paper's findings on reasoning chains")
    short = text.split("## In short", 1)[1]
    if (where.setting == "reasoning").any() and (where.setting == "direct-answer contrast").any():
        assert short.index("### Reasoning setting") < short.index("### Direct-answer contrast")
    for r in where[where.setting == "direct-answer contrast"].itertuples():
        cell = nodes[(nodes.task == r.task) & (nodes.student == r.student)]
        cell = _unique_nodes(cell)
        cell = cell[cell.informative.astype(bool)]
        share = (cell.position == 0).mean()
        heading = f"### {r.task} · {r.student} (direct-answer contrast)\n\n"
        assert heading + (f"Direct-answer contrast: {share:.0%} of this cell's informative nodes are at the first "
                          "response token.") in text


def test_minutes_per_question_per_chunk_by_hand(data, numbers):
    """Each chunked cell's sessions, one per chunk in question order: minutes and generated tokens per question
    from run.json's session records."""
    expected = []
    for run in data[1]:
        ranges = run["config"].get("questions") or []
        if not ranges:
            continue
        ranges = ranges if isinstance(ranges[0], list) else [ranges]
        assert len(ranges) == len(run["sessions"])  # every committed chunk ran in one session
        for (a, b), session in zip(ranges, run["sessions"]):
            expected.append((run["config"]["task"], run["config"]["student"], f"{a}:{b}",
                             session["total_s"] / 60 / session["questions_sampled"],
                             session["generated_tokens"] / session["questions_sampled"]))
    table = numbers["sessions"]
    assert len(table) == len(expected)
    for row, (task, student, chunk, minutes, tokens) in zip(table.itertuples(), expected):
        assert (row.task, row.student, row.chunk) == (task, student, chunk)
        assert (row.minutes, row.generated) == pytest.approx((minutes, tokens), rel=1e-12)
