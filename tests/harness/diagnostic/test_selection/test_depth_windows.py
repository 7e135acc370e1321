"""``--depth-windows even`` end to end: both selections put their nodes in equal-width depth_norm windows (checked
against the rollouts' own lengths, by hand), sampling is untouched, and the knob is a CLI option, a suite key and
part of the run's fingerprint; METHOD's exponential windows stay the default with their old fingerprints and keys."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.api.task import resolve_task
from harness.cli.commands.run import config_from
from harness.cli.main import build_parser
from harness.diagnostic.question import Settings, sampling_key
from harness.sampling.teacher import resolve_teacher
from harness.workflows.runner import (
    ConfigError,
    RunConfig,
    _record_relevant,
    config_fingerprint,
    resolve_participants,
    run,
)
from harness.workflows.suite import load_suite

TEACHERS = ("self", "self:correct-demo")


def config(selection="windows", depth_windows="even", per_window=2):
    return RunConfig(task="test-parity", student="tiny-random", teachers=TEACHERS, limit=2, device="cpu",
                     settings=Settings(rollouts=3, continuations=2, max_new_tokens=12, nodes_per_window=per_window,
                                       selection=selection, depth_windows=depth_windows))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    made = {}
    for name, cfg in {"even": config(), "exponential": config(depth_windows="exponential"),
                      "screened": config("screened", per_window=1)}.items():
        out = tmp_path_factory.mktemp(name)
        run(cfg, out)
        made[name] = (pq.read_table(out / "nodes.parquet").to_pandas(),
                      pq.read_table(out / "questions.parquet").to_pandas(), json.loads((out / "run.json").read_text()))
    return made


def even_windows_by_hand(length):
    """Window of every position of a ``length``-token rollout: as many windows as [0,1), [1,2), [2,4), ... needs
    to reach position length - 1, of equal width 1/W in depth_norm."""
    count = 1
    while 2 ** (count - 1) < length:  # windows 0..count-1 cover positions [0, 2^(count-1))
        count += 1
    return [position * count // length for position in range(length)], count


def test_even_windows_nodes_by_hand(runs):
    nodes, questions, meta = runs["even"]
    assert meta["config"]["settings"]["depth_windows"] == "even"
    assert (questions.nonfinite_positions == 0).all()  # every position is a candidate
    one = nodes[nodes.teacher == "self"]
    checked = 0
    for row in questions.itertuples():
        windows, count = even_windows_by_hand(row.response_tokens)
        mine = one[(one.question_id == row.question_id) & (one.rollout_id == row.rollout_id)]
        assert list(mine.window) == [windows[p] for p in mine.position]
        assert ((mine.depth_norm >= mine.window / count) & (mine.depth_norm < (mine.window + 1) / count)).all()
        # B = 2 per window: each window gives min(B, its size) nodes
        sizes = pd.Series(windows).value_counts()
        assert mine.groupby("window").size().to_dict() == {w: min(2, int(n)) for w, n in sizes.items()}
        checked += row.response_tokens >= 8
    assert checked > 0  # rollouts long enough for the layouts to differ


def test_the_layout_changes_the_nodes_not_the_rollouts(runs):
    even, exponential = runs["even"], runs["exponential"]
    pd.testing.assert_frame_equal(even[1], exponential[1])  # same seeds, same rollouts and grades
    positions = [set(map(tuple, frame[frame.teacher == "self"][["question_id", "rollout_id", "position"]].values))
                 for frame in (even[0], exponential[0])]
    assert positions[0] != positions[1]
    assert even[2]["fingerprint"] != exponential[2]["fingerprint"]
    assert even[2]["sampling_fingerprint"] != exponential[2]["sampling_fingerprint"]


def test_screened_selection_uses_the_even_windows(runs):
    nodes, questions, meta = runs["screened"]
    one = nodes[nodes.teacher == "self"]
    assert len(one) > 0 and (one.selection == "screened").all()
    lengths = questions.set_index(["question_id", "rollout_id"]).response_tokens
    for node in one.itertuples():
        windows, _ = even_windows_by_hand(int(lengths[(node.question_id, node.rollout_id)]))
        assert node.window == windows[node.position]
    assert one.groupby(["question_id", "rollout_id", "window"]).size().max() <= 1  # B = 1 kept per window


def test_default_keeps_its_fingerprint_and_cache_keys():
    """METHOD's windows add nothing to what the fingerprint and the reuse-cache keys hash, so runs and caches made
    before the knob existed still resume and hit."""
    default = RunConfig()
    assert "depth_windows" not in _record_relevant(default, None)["settings"]
    assert config_fingerprint(default) == config_fingerprint(
        RunConfig(settings=Settings(depth_windows="exponential")))
    assert "depth_windows" in _record_relevant(config(), None)["settings"]
    cfg = config(depth_windows="exponential")
    task = resolve_task(cfg.task)
    who = resolve_participants(cfg, task, [resolve_teacher(t) for t in cfg.teachers])
    question = next(iter(task.load(None, 1)))
    assert "depth_windows" not in sampling_key(question, who, cfg.settings, 12)["settings"]
    assert sampling_key(question, who, config().settings, 12)["settings"]["depth_windows"] == "even"


def test_cli_option_suite_key_and_validation(tmp_path):
    args = build_parser().parse_args(["run", "--depth-windows", "even"])
    assert config_from(args).settings.depth_windows == "even"
    assert config_from(build_parser().parse_args(["run"])).settings.depth_windows == "exponential"
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nstudents = ["tiny-random"]\nteachers = ["self"]\n[defaults]\ndepth_windows = "even"\n'
                     '[tasks.test-parity]\nlimit = 1\n')
    assert {cell.config.settings.depth_windows for cell in load_suite(suite).cells} == {"even"}
    with pytest.raises(ConfigError, match="--depth-windows must be one of exponential, even .*did you mean 'even'"):
        run(config(depth_windows="evn"), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
