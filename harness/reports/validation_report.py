"""The statistics and tables of ``opd validate`` (computing here, rendering in :func:`render_markdown`).

Per condition (METHOD, Predictive validity; Statistics): the gain is the per-question paired difference after -
before (greedy: 0/1; sampled: the K-sample pass rate), averaged over the finished seeds; its estimate, 95% interval
and two-sided sign-flip p come from ``harness.reports.stats.mean_of_questions`` (test inversion, no interval below 10
questions). Parse rates (answers with an extracted answer) before and after are shown apart, so format learning is
visible apart from answering right.

Across teachers, the rank correlation of the sampled gain with each predictor: (a) the diagnostic's walign for the
trained loss (``harness.reports.leaderboard.Cell``, on the diagnostic's own questions), (b) the in-context accuracy gap
(teacher with its context minus the student, per diagnostic question), (c) the teacher's own accuracy (its model on
the plain prompt). New statistics, which ``harness.reports.stats`` does not have and which live here:

* :func:`two_way_bootstrap`: intervals that resample *both* the evaluation questions (the gains) and the diagnostic's
  questions (the predictors), independently, recomputing each teacher's gain and predictor and then the correlation;
  percentile intervals (the correlation across a handful of teachers is bounded and skewed, where a t interval would
  leave [-1, 1]). The difference of two predictors' correlations is resampled the same way (paired draws).
* :func:`spearman_exact_p`: Spearman's two-sided p by the exact permutation distribution (scipy
  ``permutation_test``; ``harness.reports.stats.correlation_test`` uses scipy's t approximation, which at 6 teachers rejects
  from rho ~ 0.81 where the exact test needs 0.89). Kendall's p is ``correlation_test``'s (scipy, exact).
* :func:`minimum_detectable_rank_correlation`: the smallest |Spearman| that exact test calls significant at this
  number of teachers.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.stats

from harness.reports import stats
from harness.storage.records import REFERENCE_LOSS, VALIDATION_CONTROL

# the conditions of a validation besides the teachers (result file names and report rows; harness.workflows.validate)
CONTROL = VALIDATION_CONTROL  # no training
GRPO = REFERENCE_LOSS  # trained on the task's reward alone, the teacher-free reference
PREDICTORS = ("walign", "gap", "teacher_accuracy")
PREDICTOR_LABELS = {"walign": "diagnostic walign", "gap": "in-context accuracy gap",
                    "teacher_accuracy": "teacher's own accuracy"}
RESAMPLES = stats.RESAMPLES
ALPHA = stats.ALPHA
MIN_TEACHERS = 3  # fewer teachers with a defined predictor: no correlation


# ------------------------------------------------------------------------------------------------ gains


def _pass_rates(evaluation: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {
        "greedy": np.asarray(evaluation["greedy_correct"], dtype=float),
        "sampled": np.asarray([np.mean(x) for x in evaluation["sampled_correct"]], dtype=float),
        "greedy_parsed": np.asarray(evaluation["greedy_parsed"], dtype=float),
        "sampled_parsed": np.asarray([np.mean(x) for x in evaluation["sampled_parsed"]], dtype=float),
    }


def condition_gains(before: Mapping[str, Any], afters: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per evaluation question, after - before averaged over the given seeds' evaluations (same question order)."""
    base = _pass_rates(before)
    for after in afters:
        if list(after["question_ids"]) != list(before["question_ids"]):
            raise ValueError("an evaluation was made on other questions than the one before training")
    rates = [_pass_rates(a) for a in afters]
    return {key: np.mean([r[key] for r in rates], axis=0) - base[key] for key in base}


def commonest_answer(evaluations: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The most frequent greedy answer over the given evaluations (pooled over seeds) and its share of all
    greedy answers, unparsed ones included; None where an evaluation predates ``greedy_answer`` or nothing parsed.
    A share near 1 means the model gives one answer to every question: a label prior learned, not the task (GRPO
    on BoolQ can collapse to "Yes" and still gain by the share of yes-questions)."""
    if not evaluations or any("greedy_answer" not in e for e in evaluations):
        return None
    answers = [a for e in evaluations for a in e["greedy_answer"]]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    answer, count = max(counts.items(), key=lambda item: (item[1], item[0]))  # ties: the larger string, stably
    return {"answer": answer, "share": count / len(answers)}


def _estimate(values: np.ndarray) -> dict[str, Any]:
    e = stats.mean_of_questions(values)
    return {"estimate": e.estimate, "lo": e.lo, "hi": e.hi, "p": e.pvalue, "questions": e.questions}


# ------------------------------------------------------------------------------------------------ predictors


def walign_parts(nodes, teacher: str, loss: str) -> tuple[dict[str, tuple[float, float]], dict[str, Any]]:
    """Per diagnostic question ``(sum w*align, sum w)`` over the cell's informative nodes (w = ||g*||), and the cell's
    walign estimate (``harness.reports.leaderboard.Cell``)."""
    from harness.reports.leaderboard import Cell, informative_mask

    rows = nodes[nodes["teacher"].astype(str) == teacher]
    cell = Cell(str(rows["task"].iloc[0]), str(rows["student"].iloc[0]), teacher, loss, rows,
                informative_mask(rows, loss))
    align, weight, qids = cell.align, cell.weights, cell.question_ids
    ok = np.isfinite(align) & np.isfinite(weight) & (weight > 0)
    parts: dict[str, tuple[float, float]] = {}
    for q, a, w in zip(qids[ok], align[ok], weight[ok]):
        num, den = parts.get(q, (0.0, 0.0))
        parts[q] = (num + a * w, den + w)
    e = cell.walign_estimate
    return parts, {"estimate": e.estimate, "lo": e.lo, "hi": e.hi, "questions": e.questions, "nodes": e.n}


def accuracy_parts(predictors: Mapping[str, Any], teacher: str) -> tuple[dict[str, float], dict[str, float]]:
    """Per diagnostic question: the gap (teacher with context - student, over the answers k both have, as `opd
    accuracy`'s delta; predictors written before ``paired_gap`` existed: over all answers of each) and the teacher
    model's own pass rate."""
    per_question = predictors.get("per_question", {})
    student = per_question.get("student", {})
    own = per_question.get(predictors.get("plain_condition", {}).get(teacher, "student"), {})
    context = per_question.get(teacher, {})
    if "paired_gap" in predictors:
        gap = dict(predictors["paired_gap"].get(teacher, {}))
    else:
        gap = {q: context[q] - student[q] for q in context if context[q] is not None and student.get(q) is not None}
    accuracy = {q: v for q, v in own.items() if v is not None}
    return gap, accuracy


# ------------------------------------------------------------------------------------------------ correlation


def _ranks(values: np.ndarray) -> np.ndarray:
    return scipy.stats.rankdata(values, axis=-1)


def spearman_exact_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided p of Spearman's rho by the permutation distribution of y against x (exact up to 8 points: all
    n! pairings; above, 20,000 seeded random pairings). NaN where rho is undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan

    def rho(y_perm, axis=-1):
        rx, ry = _ranks(x), _ranks(y_perm)
        rx = rx - rx.mean()
        ry = ry - ry.mean(axis=-1, keepdims=True)
        return (ry @ rx) / np.sqrt((rx @ rx) * (ry ** 2).sum(axis=-1))

    result = scipy.stats.permutation_test((y,), rho, permutation_type="pairings", vectorized=True,
                                          n_resamples=20_000 if x.size > 8 else math.inf,
                                          alternative="two-sided", rng=np.random.default_rng(0))
    return float(result.pvalue)


def minimum_detectable_rank_correlation(n: int, alpha: float = ALPHA) -> float:
    """The smallest |Spearman rho| (no ties) whose exact two-sided permutation p is below ``alpha`` at n points:
    the weakest ranking agreement this number of teachers can show at all. NaN where none can (n < 4 or so)."""
    if n < 3:
        return math.nan
    if n <= 8:
        base = np.arange(n)
        rhos = np.array([1 - 6 * np.sum((base - np.array(p)) ** 2) / (n * (n * n - 1))
                         for p in itertools.permutations(range(n))])
    else:
        rng = np.random.default_rng(0)
        perms = np.argsort(rng.random((100_000, n)), axis=1)
        rhos = 1 - 6 * ((perms - np.arange(n)) ** 2).sum(axis=1) / (n * (n * n - 1))
    magnitudes = np.round(np.abs(rhos), 12)
    for value in np.unique(magnitudes):
        if np.mean(magnitudes >= value) < alpha:
            return float(value)
    return math.nan


def two_way_bootstrap(gains: np.ndarray, predictor_parts: Mapping[str, list], diagnostic_ids: Sequence[str],
                      resamples: int = RESAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap draws of each predictor's Spearman and Kendall correlation with the mean gain across teachers.

    ``gains``: [teachers, eval questions] per-question gains. ``predictor_parts[name]``: per teacher, a mapping
    question id -> ``(numerator, denominator)`` (walign) or -> value (a mean over questions). Each draw resamples
    evaluation questions and diagnostic questions independently, with replacement; the same draw serves every
    predictor (paired differences)."""
    rng = np.random.default_rng(seed)
    teachers, n_eval = gains.shape
    ids = list(diagnostic_ids)
    out: dict[str, np.ndarray] = {f"{name}:{m}": np.full(resamples, math.nan) for name in predictor_parts
                                  for m in ("spearman", "kendall")}
    matrices = {}
    for name, parts in predictor_parts.items():
        num = np.zeros((teachers, len(ids)))
        den = np.zeros((teachers, len(ids)))
        for t, per in enumerate(parts):
            for j, q in enumerate(ids):
                if q in per:
                    value = per[q]
                    num[t, j], den[t, j] = value if isinstance(value, tuple) else (value, 1.0)
        matrices[name] = (num, den)
    for b in range(resamples):
        eval_draw = rng.integers(0, n_eval, n_eval)
        diag_draw = rng.integers(0, max(len(ids), 1), len(ids))
        gain = gains[:, eval_draw].mean(axis=1)
        for name, (num, den) in matrices.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                value = num[:, diag_draw].sum(axis=1) / den[:, diag_draw].sum(axis=1)
            ok = np.isfinite(value)
            if ok.sum() >= MIN_TEACHERS:
                out[f"{name}:spearman"][b] = stats.correlation(value[ok], gain[ok], "spearman")
                out[f"{name}:kendall"][b] = stats.correlation(value[ok], gain[ok], "kendall")
    return out


def _percentile(draws: np.ndarray) -> tuple[float, float, int]:
    ok = draws[np.isfinite(draws)]
    if ok.size < 2:
        return math.nan, math.nan, int(ok.size)
    lo, hi = np.quantile(ok, [ALPHA / 2, 1 - ALPHA / 2])
    return float(lo), float(hi), int(ok.size)


# ------------------------------------------------------------------------------------------------ the report


def _mean_of(per: Mapping[str, Any]) -> float:
    values = [v[0] / v[1] if isinstance(v, tuple) else v for v in per.values()]
    if per and isinstance(next(iter(per.values())), tuple):
        num = sum(v[0] for v in per.values())
        den = sum(v[1] for v in per.values())
        return num / den if den > 0 else math.nan
    return float(np.mean(values)) if values else math.nan


def build_report(protocol: Mapping[str, Any], before: Mapping[str, Any], results: Mapping[tuple[str, int], Any],
                 teachers: Sequence[str], predictors: Mapping[str, Any], nodes, loss: str,
                 resamples: int = RESAMPLES) -> dict[str, Any]:
    """Everything ``validation.json`` holds, from the finished runs (any subset of (condition, seed))."""
    base = _pass_rates(before)
    rows, runs_by_teacher = [], {}
    for condition in (CONTROL, GRPO, *teachers):
        runs = [results[k] for k in sorted(results) if k[0] == condition]
        row: dict[str, Any] = {"condition": condition, "seeds": [r["seed"] for r in runs],
                               "questions": len(before["question_ids"]),
                               "greedy_before": float(base["greedy"].mean()),
                               "sampled_before": float(base["sampled"].mean()),
                               "parsed_greedy_before": float(base["greedy_parsed"].mean()),
                               "parsed_sampled_before": float(base["sampled_parsed"].mean()),
                               "commonest_before": commonest_answer([before])}
        if runs:
            gains = condition_gains(before, [r["after"] for r in runs])
            row.update(greedy_after=row["greedy_before"] + float(gains["greedy"].mean()),
                       sampled_after=row["sampled_before"] + float(gains["sampled"].mean()),
                       parsed_greedy_after=row["parsed_greedy_before"] + float(gains["greedy_parsed"].mean()),
                       parsed_sampled_after=row["parsed_sampled_before"] + float(gains["sampled_parsed"].mean()),
                       gain_greedy=_estimate(gains["greedy"]), gain_sampled=_estimate(gains["sampled"]),
                       # training noise: the interval resamples questions at fixed trained weights, not seeds
                       sampled_gain_by_seed={str(r["seed"]): float(condition_gains(before, [r["after"]])["sampled"]
                                                                   .mean()) for r in runs},
                       parse_change=_estimate(gains["sampled_parsed"]),
                       commonest_after=commonest_answer([r["after"] for r in runs]),
                       seconds_per_step=_mean_or_none([r.get("seconds_per_step") for r in runs]))
            if condition not in (CONTROL, GRPO):
                runs_by_teacher[condition] = runs
        rows.append(row)
    # like with like: the correlations rank gains over the same seeds for every teacher (the seeds all have
    # finished), while the rows show each condition over all of its own; a growing validation mixes them otherwise
    common_seeds = (sorted(set.intersection(*({r["seed"] for r in runs} for runs in runs_by_teacher.values())))
                    if runs_by_teacher else [])
    gains_by_teacher = {t: condition_gains(before, [r["after"] for r in runs if r["seed"] in common_seeds])["sampled"]
                        for t, runs in runs_by_teacher.items()} if common_seeds else {}

    row_of = {row["condition"]: row for row in rows}
    parts: dict[str, dict[str, Any]] = {name: {} for name in PREDICTORS}
    for teacher in teachers:
        row = row_of[teacher]
        if nodes is not None:
            parts["walign"][teacher], row["walign"] = walign_parts(nodes, teacher, loss)
        if predictors.get("per_question"):
            parts["gap"][teacher], parts["teacher_accuracy"][teacher] = accuracy_parts(predictors, teacher)
            row["gap"] = _mean_of(parts["gap"][teacher])
            row["teacher_accuracy"] = _mean_of(parts["teacher_accuracy"][teacher])
    scored = [t for t in teachers if t in gains_by_teacher]
    correlations = []
    available = [name for name in PREDICTORS if all(t in parts[name] for t in scored) and scored]
    diag_ids = list(protocol.get("diagnostic_ids", []))
    draws = {}
    if len(scored) >= MIN_TEACHERS and available:
        gains = np.vstack([gains_by_teacher[t] for t in scored])
        draws = two_way_bootstrap(gains, {name: [parts[name][t] for t in scored] for name in available}, diag_ids,
                                  resamples=resamples)
    mean_gains = [float(gains_by_teacher[t].mean()) for t in scored]
    for name in available:
        values = [_mean_of(parts[name][t]) for t in scored]
        ok = [i for i, v in enumerate(values) if math.isfinite(v)]
        x, y = [values[i] for i in ok], [mean_gains[i] for i in ok]
        if len(ok) >= MIN_TEACHERS:
            rho = stats.correlation(x, y, "spearman")
            tau, tau_p = stats.correlation_test(x, y, "kendall")
        else:  # two points always rank-correlate at +-1: not a correlation
            rho = tau = tau_p = math.nan
        entry = {"predictor": name, "teachers": len(ok), "spearman": rho, "spearman_p": spearman_exact_p(x, y),
                 "kendall": tau, "kendall_p": tau_p,
                 # the same correlation on each training seed alone: how far the ranking moves with training noise
                 "spearman_by_seed": {
                     str(seed): (stats.correlation(x, [row_of[scored[i]]["sampled_gain_by_seed"][str(seed)]
                                                       for i in ok], "spearman")
                                 if len(ok) >= MIN_TEACHERS else math.nan) for seed in common_seeds}}
        for method in ("spearman", "kendall"):
            lo, hi, used = _percentile(draws.get(f"{name}:{method}", np.array([])))
            entry.update({f"{method}_lo": lo, f"{method}_hi": hi})
        entry["resamples_defined"] = used
        correlations.append(entry)
    comparisons = []
    if "walign" in available:
        for other in (n for n in available if n != "walign"):
            difference = draws.get("walign:spearman", np.array([])) - draws.get(f"{other}:spearman", np.array([]))
            lo, hi, used = _percentile(difference) if difference.size else (math.nan, math.nan, 0)
            rw = next(c for c in correlations if c["predictor"] == "walign")["spearman"]
            ro = next(c for c in correlations if c["predictor"] == other)["spearman"]
            comparisons.append({"versus": other, "difference": rw - ro, "lo": lo, "hi": hi, "resamples": used,
                                # a predictor equal for every teacher (teacher accuracy among self-contexts of one
                                # student) ranks nothing: there is no correlation to beat
                                "baseline_constant": not math.isfinite(ro)})
    mdrc = minimum_detectable_rank_correlation(len(scored))
    if runs_by_teacher and not common_seeds:  # trained teachers, none scored: say why, not "0 teachers"
        sentence = ("not testable yet: the trained teachers share no finished seed, so their gains would compare "
                    "different training runs")
    else:
        sentence = verdict(correlations, comparisons, len(scored), mdrc)
    report = {"protocol": dict(protocol), "loss": loss, "rows": rows, "correlations": correlations,
              "comparisons": comparisons, "teachers_scored": scored, "correlation_seeds": common_seeds,
              "minimum_detectable_spearman": mdrc, "verdict": sentence}
    report["notes"] = notes(report)
    return report


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def verdict(correlations: Sequence[Mapping[str, Any]], comparisons: Sequence[Mapping[str, Any]], teachers: int,
            mdrc: float) -> str:
    """One sentence: whether walign predicts the gain better than each baseline, decided by the bootstrap interval
    of the difference of Spearman correlations; inconclusive otherwise (never "no difference")."""
    walign = next((c for c in correlations if c["predictor"] == "walign"), None)
    if teachers < MIN_TEACHERS:
        return f"not testable: {teachers} teacher(s) with a finished run; a rank correlation needs at least 3"
    if walign is None:
        return "not testable: no diagnostic walign for every trained teacher (pass --diagnostic RUN)"
    if not math.isfinite(walign["spearman"]):
        return ("not testable: fewer than 3 teachers have a walign (a teacher without informative nodes, such as "
                "`self`, has none), or walign or the gain is constant across them")
    detectable = (f"detectable from |rho| >= {mdrc:.2f}" if math.isfinite(mdrc) else
                  f"no correlation can reach p < {ALPHA} with {teachers} teachers")
    head = (f"Spearman(walign, gain) = {walign['spearman']:+.2f} (exact p {walign['spearman_p']:.3g}, "
            f"{teachers} teachers; {detectable})")
    significant = walign["spearman_p"] < ALPHA
    constant = [c["versus"] for c in comparisons if c.get("baseline_constant")]
    better = [c["versus"] for c in comparisons if c["lo"] > 0 or (c["versus"] in constant and significant)]
    worse = [c["versus"] for c in comparisons if c["hi"] < 0]
    undecided = [c["versus"] for c in comparisons if c["versus"] not in better + worse]
    parts = []
    if constant:
        parts.append(", ".join(PREDICTOR_LABELS[c] for c in constant) + " is the same for every teacher (ranks "
                     "nothing), so walign beats it exactly when its own correlation is significant")
    if better:
        parts.append("walign predicts better than " + ", ".join(PREDICTOR_LABELS[b] for b in better))
    if worse:
        parts.append("walign predicts worse than " + ", ".join(PREDICTOR_LABELS[w] for w in worse))
    undecided_defined = [u for u in undecided if u not in constant]
    if undecided_defined:
        parts.append("inconclusive against " + ", ".join(PREDICTOR_LABELS[u] for u in undecided_defined)
                     + " (95% bootstrap interval of the difference covers 0)")
    if not comparisons:
        parts.append("no baseline predictor available to compare with")
    earns = bool(comparisons) and len(better) == len(comparisons) and significant
    return head + ": " + "; ".join(parts) + (". The diagnostic earns its cost here." if earns else
                                            ". The diagnostic has not shown it earns its cost here.")


def _training_where(protocol: Mapping[str, Any]) -> str:
    start, end = protocol["train_range"]
    split = protocol.get("train_split")
    return (f"training questions [{start}, {end}) of the task's {split} split." if split else
            f"training questions [{start}, {end}) of the same order (the task has no training split).")


def notes(report: Mapping[str, Any]) -> list[str]:
    protocol = report["protocol"]
    config = protocol.get("config", {})
    training = config.get("training", {})
    lines = [
        f"Protocol fixed before training: loss {report['loss']}, {training.get('steps')} steps x "
        f"{training.get('batch')} questions x {training.get('rollouts')} rollouts, lr {training.get('lr')}, AdamW, "
        f"gradient norm clipped at 1; evaluation questions [{protocol['eval_range'][0]}, {protocol['eval_range'][1]})"
        + (f", diagnostic [{protocol['diagnostic_range'][0]}, {protocol['diagnostic_range'][1]})"
           if protocol.get("diagnostic_range") else "") + " of the task's question order; " + _training_where(protocol),
        "gain: per evaluation question, after - before (greedy: 0/1; sampled: pass rate of "
        f"{config.get('samples')} answers at T=1), averaged over the finished seeds; interval: 95% sign-flip "
        "test inversion (none below 10 questions); p: two-sided sign-flip test; n = evaluation questions. The "
        "interval and p resample questions for the trained weights in hand; they do not contain training noise "
        "(another seed trains other weights): `sampled gain by seed` shows it, and gains whose seeds differ by "
        "more than the teachers do are not ranked by this validation.",
        "commonest greedy answer: the most frequent answer the grader read from the greedy responses and its "
        "share of all evaluation questions (pooled over seeds); a share near 1 after training is one answer to "
        "every question, so that condition's gain is the share of questions with that gold answer, not skill.",
        "Evaluation before and after uses the same random streams (common random numbers): unchanged weights "
        "answer exactly alike, so the control (no training) takes the before pass as its after and gains 0 by "
        "construction; every other condition is evaluated again after its steps.",
        "Correlations are across teachers (control and grpo excluded) of the sampled gain with each predictor; "
        "intervals: 2.5-97.5% percentiles of a bootstrap resampling evaluation and diagnostic questions "
        "independently; Spearman p: exact permutation test; Kendall p: scipy's exact test.",
        f"Minimum detectable Spearman at {len(report['teachers_scored'])} teachers (exact test, alpha {ALPHA:g}): "
        + (f"{report['minimum_detectable_spearman']:.2f}" if math.isfinite(report["minimum_detectable_spearman"])
           else "none can be detected"),
    ]
    seed_counts = {len(r["seeds"]) for r in report["rows"] if r["condition"] in report["teachers_scored"]}
    if len(seed_counts) > 1:
        common = report.get("correlation_seeds") or []
        lines.append("Teachers rest on different numbers of finished seeds (see `seeds`): the validation is still "
                     "growing. The correlations use only the seed(s) every scored teacher has finished ("
                     + (", ".join(map(str, common)) or "none") + "), so each teacher's gain there is over the same "
                     "seeds; the rows show each condition over all of its own.")
    return lines


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "-"
    if not math.isfinite(entry["lo"]):
        return f"{entry['estimate']:+.3f} (n {entry['questions']} < 10: no interval)"
    return f"{entry['estimate']:+.3f} [{entry['lo']:+.3f}, {entry['hi']:+.3f}]"


def _commonest(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    def one(entry):
        return f"{entry['answer']} {entry['share']:.2f}" if entry else "-"
    return f"{one(before)} -> {one(after)}" if before or after else "-"


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown tables (tabulate)."""
    from tabulate import tabulate

    table = []
    for row in report["rows"]:
        walign = row.get("walign")
        table.append([
            row["condition"], ",".join(map(str, row["seeds"])) or "(not run)",
            f"{_fmt(row['greedy_before'])} -> {_fmt(row.get('greedy_after'))}", _interval(row.get("gain_greedy")),
            _fmt((row.get("gain_greedy") or {}).get("p")),
            f"{_fmt(row['sampled_before'])} -> {_fmt(row.get('sampled_after'))}", _interval(row.get("gain_sampled")),
            _fmt((row.get("gain_sampled") or {}).get("p")),
            " / ".join(f"{g:+.3f}" for g in (row.get("sampled_gain_by_seed") or {}).values()) or "-",
            f"{_fmt(row['parsed_sampled_before'])} -> {_fmt(row.get('parsed_sampled_after'))}",
            _commonest(row.get("commonest_before"), row.get("commonest_after")),
            _fmt(walign["estimate"]) + (f" (q {walign['questions']})" if walign else "") if walign else "-",
            _fmt(row.get("gap")), _fmt(row.get("teacher_accuracy")), _fmt(row.get("seconds_per_step"), 1),
        ])
    headers = ["condition", "seeds", "greedy acc", "greedy gain [95% CI]", "p greedy", "sampled pass",
               "sampled gain [95% CI]", "p sampled", "sampled gain by seed", "parse rate (sampled)", "commonest greedy answer", "walign", "gap",
               "teacher acc", "s/step"]
    lines = [f"# opd validate ({report['loss']})", "", tabulate(table, headers, tablefmt="github"), ""]
    if report["correlations"]:
        corr = [[PREDICTOR_LABELS[c["predictor"]], c["teachers"],
                 f"{_fmt(c['spearman'], 2)} [{_fmt(c['spearman_lo'], 2)}, {_fmt(c['spearman_hi'], 2)}]",
                 _fmt(c["spearman_p"]),
                 " / ".join(_fmt(v, 2) for v in (c.get("spearman_by_seed") or {}).values()) or "-",
                 f"{_fmt(c['kendall'], 2)} [{_fmt(c['kendall_lo'], 2)}, "
                 f"{_fmt(c['kendall_hi'], 2)}]", _fmt(c["kendall_p"])] for c in report["correlations"]]
        seeds = ", ".join(map(str, report.get("correlation_seeds") or []))
        lines += [f"## Rank correlation of the sampled gain with each predictor (seeds {seeds})", "",
                  tabulate(corr, ["predictor", "teachers", "Spearman [95%]", "p (exact)", "Spearman by seed",
                                  "Kendall [95%]", "p"], tablefmt="github"), ""]
    for c in report["comparisons"]:
        lines.append(f"- walign vs {PREDICTOR_LABELS[c['versus']]}: Spearman difference {_fmt(c['difference'], 2)} "
                     f"[{_fmt(c['lo'], 2)}, {_fmt(c['hi'], 2)}]")
    lines += ["", f"**Verdict:** {report['verdict']}", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"
