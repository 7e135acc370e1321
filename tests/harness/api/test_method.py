"""METHOD's defaults have one owner (harness.api.method): the literals are METHOD.md's, and every reader uses them."""
from __future__ import annotations

from dataclasses import asdict

from harness.api import method
from harness.api.method import Settings
from harness.cli.commands.run import config_from
from harness.cli.main import build_parser
from harness.reports import stats


def test_the_owner_holds_method_md_numbers():
    # METHOD.md, Targeted rollouts and Distillation gradients: G=8, T=1.0, B=2, K=4, M=4, entropy priority, beta 0.5;
    # the selection and depth windows are METHOD's own (windows, exponential). Written out here so that an edit of
    # the owner that departs from METHOD.md fails.
    assert asdict(Settings()) == {"rollouts": 8, "temperature": 1.0, "nodes_per_window": 2, "top_k": 4,
                                  "continuations": 4, "priority": "entropy", "jsd_beta": 0.5, "max_new_tokens": None,
                                  "selection": "windows", "depth_windows": "exponential"}
    # METHOD.md, Statistics: alpha 0.05 and 80% power; 2,000 bootstrap resamples and 10,000 sign flips by default
    assert (method.ALPHA, method.POWER, method.RESAMPLES, method.PERMUTATIONS) == (0.05, 0.80, 2_000, 10_000)


def test_run_flags_default_to_the_owner():
    args = build_parser().parse_args(["run"])
    assert config_from(args).settings == Settings()
    assert {name: getattr(args, name) for name in asdict(Settings())} == asdict(Settings())


def test_statistics_read_the_owner():
    from harness.cli import options
    from harness.reports import leaderboard, validation_report
    from harness.workflows import accuracy

    assert stats.Options() == stats.Options(alpha=0.05, resamples=2_000, permutations=10_000)
    assert stats.LEVEL == 0.95
    for alpha in (stats.ALPHA, leaderboard.ALPHA, validation_report.ALPHA, accuracy.ALPHA):
        assert alpha is method.ALPHA
    assert (options.DEFAULT_RESAMPLES, options.DEFAULT_PERMUTATIONS) == (method.RESAMPLES, method.PERMUTATIONS)
    plan = build_parser()._subparsers._group_actions[0].choices["plan"]
    effect = next(action for action in plan._actions if action.dest == "effect")
    assert "80% power at alpha 0.05" in effect.help % {}


def test_other_commands_read_the_owner():
    from harness.workflows.validate_config import Training

    assert Training().jsd_beta == method.JSD_BETA
    validate = build_parser()._subparsers._group_actions[0].choices["validate"]
    assert validate.get_default("jsd_beta") == method.JSD_BETA
