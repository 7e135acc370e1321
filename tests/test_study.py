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
            expected = _cosine(ideal, d)
            assert row[f"align_{name}"] == pytest.approx(expected, abs=1e-7, nan_ok=True), name
            checked += math.isfinite(expected)
    return checked


@pytest.fixture(scope="module")
def compact_from_a_run(tmp_path_factory, study):
    """A tiny real run (random-weight student, an external and a context teacher, the control), written as a run
    directory and collected into a compact file the way the study's runs are."""
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
    out = root / "compact"
    study.collect(root, None, out)
    return study.load(out)[0]


def test_a_collected_compact_file_recomputes_every_alignment(study, compact_from_a_run):
    """The compact file carries every column S_hat, g* and the alignments need, and recomputing them from those
    columns alone (numpy, not harness.diagnostic.alignment) gives the stored values."""
    assert set(study.RECOMPUTE_COLUMNS) <= set(compact_from_a_run.columns)
    assert {"prefix_shared", "rollout_unparsed", "gold"} <= set(compact_from_a_run.columns)
    assert _recompute(compact_from_a_run, temperature=1.0) > 20


def test_the_committed_compact_file_recomputes_where_it_can(study, data, numbers):
    """The committed file recomputes its alignments when it holds the columns; where it does not (collected before
    they were kept), the write-up names them instead of using them."""
    nodes = data[0]
    missing = [c for c in study.RECOMPUTE_COLUMNS if c not in nodes]
    if missing:
        assert numbers["records"]["recompute"] == missing
        text = "\n".join(study.records_lines(numbers["records"]))
        assert all(f"`{c}`" in text for c in missing)
    else:
        runs = data[1]
        assert _recompute(nodes, temperature=runs[0]["config"]["settings"]["temperature"]) > 0
