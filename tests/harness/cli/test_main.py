"""The command line as a new user meets it: bad arguments give one paragraph (exit 2, no traceback), flags are never
abbreviated into other flags, ``--include`` works after the subcommand, and ``--summarizer``/``--include-path``
reach the factories as arguments, never through the environment."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from harness.api.errors import ConfigError, OpdError
from harness.api.task import TASKS
from harness.cli.commands.run import config_from
from harness.cli.main import build_parser, main
from harness.cli.options import with_summarizer
from harness.sampling.models import MODELS
from harness.sampling.teacher import TEACHERS
from harness.workflows.runner import RunConfig, _record_relevant, config_fingerprint
from tests.helpers import ROOT

TINY_RUN = ["--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--limit", "1",
            "--rollouts", "2", "--max-new-tokens", "4", "--quiet", "--no-cache"]
BAD_ARGUMENT = "no-such-argument"
# lm_eval:<name> with an unknown name indexes lm-eval's ~200 built-in task folders (~20 s); its empty argument is
# refused by the same factory at once (unknown names: tests/tasks/test_lm_eval_bridge.py)
BAD_SPECS = {"lm_eval": "lm_eval:"}
# hf:<id> asks the hub, which tests never do; its refusal of a missing id is a ModelError tested in test_models
NEEDS_NETWORK = {"hf"}


def _flag_value(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def _cases() -> list[tuple[str, str]]:
    cases = []
    for flag, registry in (("--task", TASKS), ("--teacher", TEACHERS), ("--student", MODELS)):
        for name in registry.names():
            if name not in NEEDS_NETWORK:
                cases.append((flag, BAD_SPECS.get(name, f"{name}:{BAD_ARGUMENT}")))
    return cases


@pytest.mark.parametrize(("flag", "spec"), _cases(), ids=lambda value: str(value))
def test_every_factory_refuses_a_bad_argument_with_one_paragraph(flag, spec, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["run", *_flag_value(TINY_RUN, flag, spec), "--out", str(tmp_path / "run")])
    out, err = capfd.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in out + err
    assert out.lstrip().startswith("error:")
    assert not (tmp_path / "run" / "nodes.parquet").exists()


def test_factory_errors_are_one_family():
    """The CLI catches OpdError: the errors of the factories, the registry and the data loader all derive from it."""
    from harness.api.data import DataError
    from harness.api.errors import ModelError, SpecError
    from harness.api.registry import RegistryError
    from harness.sampling.threads import ThreadsError
    from harness.storage.records import DamagedRecordsError, RecordWriteError
    from tasks.lm_eval import LmEvalTaskError

    for error in (SpecError, ConfigError, RegistryError, DataError, ThreadsError, LmEvalTaskError, ModelError,
                  DamagedRecordsError, RecordWriteError):
        assert issubclass(error, OpdError), error
    for spec in ("boolq:x", "aime:x", "aime24:x", "gsm8k:x"):
        with pytest.raises(SpecError, match="takes (no|one optional) argument"):
            TASKS.get(spec.split(":")[0])("x")
    with pytest.raises(SpecError, match="needs a model spec"):
        TEACHERS.get("model")("")


BAD_RUN_OPTIONS = [["--device", "foo"], ["--device", "cuda:x"], ["--top-k", "0"], ["--max-new-tokens", "0"],
                   ["--backend", "x"], ["--threads", "0"], ["--temperature", "0"], ["--continuations", "0"],
                   ["--rollouts", "0"], ["--nodes-per-window", "0"], ["--jsd-beta", "1"], ["--priority", "x"],
                   ["--selection", "x"], ["--limit", "0"], ["--data-dir", "/nonexistent/data"]]


@pytest.mark.parametrize("option", BAD_RUN_OPTIONS, ids=" ".join)
def test_every_bad_run_option_is_one_paragraph_before_any_work(option, tmp_path, capfd):
    code = main(["run", *TINY_RUN, *option, "--out", str(tmp_path / "run")])
    out, err = capfd.readouterr()
    assert code == 2 and out.lstrip().startswith("error:") and "Traceback" not in out + err, out + err
    assert option[0].removeprefix("--").replace("-", " ").split()[0] in out.lower()  # names the flag's subject
    assert not (tmp_path / "run").exists()


def test_top_k_zero_is_refused_before_any_work(tmp_path, capsys):
    code = main(["run", *TINY_RUN, "--top-k", "0", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 2
    assert "--top-k must be at least 1" in out
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------- abbreviations and --include


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_abbreviates_flags():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 10  # every subcommand, not only the top level
    assert all(not parser.allow_abbrev for parser in parsers)
    with pytest.raises(SystemExit) as stop:  # used to be read as --include-path
        build_parser().parse_args(["run", "--include-pat", "x"])
    assert stop.value.code == 2


def test_every_subcommand_accepts_include_and_debug():
    parser = build_parser()
    for command in ("run", "leaderboard", "list", "accuracy", "plan", "suite", "grade"):
        subcommand = next(p for p in _parsers(parser) if p.prog.endswith(f" {command}"))
        flags = {option for action in subcommand._actions for option in action.option_strings}
        assert {"--include", "--debug"} <= flags, command


def _readme_plugin(tmp_path: Path) -> Path:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# my_teacher\.py\n.+?)```", readme, re.S).group(1)
    plugin = tmp_path / "my_teacher.py"
    plugin.write_text(code)
    return plugin


@pytest.mark.parametrize("position", ["before run", "after run"])
def test_readme_plugin_example_with_include_before_or_after_run(position, tmp_path, capsys):
    plugin = _readme_plugin(tmp_path)
    run_args = ["--task", "test-parity", "--student", "tiny-random", "--teacher", "self:hint", "--teacher", "self",
                "--limit", "1", "--rollouts", "3", "--max-new-tokens", "6", "--out", str(tmp_path / "run"), "--quiet"]
    argv = (["--include", str(plugin), "run", *run_args] if position == "before run"
            else ["run", "--include", str(plugin), *run_args])
    try:
        assert main(argv) == 0
        assert "self:hint" in capsys.readouterr().out
    finally:
        TEACHERS.remove("self:hint")


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path):
    with pytest.raises(OpdError):
        main(["run", "--debug", *_flag_value(TINY_RUN, "--task", "boolq:x"), "--out", str(tmp_path / "run")])


# ------------------------------------------------------------ --summarizer and --include-path: explicit arguments


def test_summarizer_is_an_argument_of_the_spec():
    assert with_summarizer(["self:summary", "self", "model:tiny-random+summary", "self:summary:other",
                            "model:tiny-random+self:summary"], "tiny-random:3") == (
        "self:summary:tiny-random:3", "self", "model:tiny-random+self:summary:tiny-random:3", "self:summary:other",
        "model:tiny-random+self:summary:tiny-random:3")
    assert with_summarizer(["self:summary"], None) == ("self:summary",)
    with pytest.raises(ConfigError, match="idp:correct-demo,self-demo,summary:tiny-random"):
        with_summarizer(["idp:default"], "tiny-random")
    teacher = TEACHERS.get("self:summary")("tiny-random:3")
    assert teacher.name == "self:summary:tiny-random:3" and teacher.variant == "summarizer=tiny-random:3"


def test_run_flags_reach_the_config_and_leave_the_environment_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("OPD_SUMMARIZER", raising=False)
    monkeypatch.delenv("OPD_LM_EVAL_INCLUDE_PATH", raising=False)
    before = dict(os.environ)
    args = build_parser().parse_args(["run", "--task", "lm_eval:toy", "--teacher", "self:summary",
                                      "--summarizer", "tiny-random", "--include-path", str(tmp_path)])
    config = config_from(args)
    assert dict(os.environ) == before
    assert config.teachers == ("self:summary:tiny-random",)
    assert config.include_paths == (str(tmp_path.resolve()),)


def test_accuracy_flags_reach_the_config_and_leave_the_environment_alone(tmp_path, monkeypatch, capsys):
    import harness.workflows.accuracy

    monkeypatch.delenv("OPD_SUMMARIZER", raising=False)
    monkeypatch.delenv("OPD_LM_EVAL_INCLUDE_PATH", raising=False)
    before = dict(os.environ)
    seen = []

    def refuse(config, progress=None):  # stands in for the evaluation: the config is what is checked
        seen.append(config)
        raise ConfigError("stop here")

    monkeypatch.setattr(harness.workflows.accuracy, "evaluate", refuse)
    code = main(["accuracy", "--task", "lm_eval:toy", "--student", "tiny-random", "--teacher", "self:summary",
                 "--summarizer", "tiny-random", "--include-path", str(tmp_path), "--format", "json"])
    assert code == 2 and "stop here" in capsys.readouterr().out
    assert dict(os.environ) == before
    assert seen[0].teachers == ("self:summary:tiny-random",)
    assert seen[0].include_paths == (str(tmp_path.resolve()),)


def test_include_paths_only_for_lm_eval_and_kept_out_of_default_fingerprints(tmp_path):
    from harness.api.task import resolve_task

    with pytest.raises(ConfigError, match="applies to --task lm_eval:<name> only"):
        resolve_task("boolq", include_paths=[str(tmp_path)])
    assert "include_paths" not in _record_relevant(RunConfig(), None)  # runs before this flag keep their fingerprint
    assert config_fingerprint(RunConfig(include_paths=(str(tmp_path),))) != config_fingerprint(RunConfig())


# ------------------------------------------------------------------ every report fits the console, notes whole


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(_report_commands(out)["run (finished: reprints)"]) == 0
    return out


def _report_commands(run: Path) -> dict[str, list[str]]:
    return {
        # two teachers with alignments (for the pairs) and self (for the zero-direction note)
        "run (finished: reprints)": ["run", "--task", "test-parity", "--student", "tiny-random", "--teacher",
                                     "self:correct-demo", "--teacher", "model:tiny-random:1", "--teacher", "self",
                                     "--limit", "4", "--rollouts", "3", "--max-new-tokens", "6", "--quiet",
                                     "--no-cache", "--out", str(run)],
        "leaderboard": ["leaderboard", str(run), "--permutations", "200"],
        "pairs": ["leaderboard", str(run), "--pairs", "--permutations", "200"],
        "analyze": ["analyze", str(run), "--permutations", "200", "--resamples", "50"],
        "compare": ["compare", str(run), "--permutations", "200"],
        "plan": ["plan", str(run), "--permutations", "200"],
        "findings": ["findings", str(run), "--permutations", "200"],
        "accuracy": ["accuracy", "--task", "test-parity", "--student", "tiny-random", "--teacher",
                     "self:correct-demo", "--limit", "4"],
        "list": ["list", "teachers"],
    }


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("width", [80, 100])
def test_every_report_fits_the_console_and_never_cuts_a_note(width, tiny_run, capsys, monkeypatch):
    from harness.render.tables import GROUP_NOTE, SMALL_N_NOTE
    from harness.reports.leaderboard import ZERO_GRAD_NOTE

    monkeypatch.setenv("COLUMNS", str(width))
    for name, argv in _report_commands(tiny_run).items():
        code = main(argv)
        out = capsys.readouterr().out
        assert code in (0, 2), name  # findings may refuse one run: in one paragraph, within the width too
        assert out.strip(), name
        too_wide = [line for line in out.splitlines() if len(line) > width]
        assert not too_wide, f"{name} at {width} columns: {too_wide[:2]}"
        assert "…" not in out, f"{name}: a cell was cut"
        if name in ("leaderboard", "run (finished: reprints)"):
            for note in (ZERO_GRAD_NOTE, SMALL_N_NOTE, GROUP_NOTE):  # 4 questions: small n; self: zero direction
                assert _words(note) in _words(out), (name, note)
        if name == "plan" and width == 80:
            assert "Not shown at 80 columns:" in out  # the columns left out are named, not lost silently
        if name == "pairs":
            assert "model:tiny-random:1" in out and "diff [95% CI]" in out


def test_wide_shows_every_column_however_narrow_the_console(tiny_run, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["plan", str(tiny_run), "--permutations", "200"]) == 0
    narrow = capsys.readouterr().out
    assert main(["plan", str(tiny_run), "--permutations", "200", "--wide"]) == 0
    wide = capsys.readouterr().out
    hidden = _words(narrow).split("Not shown at 80 columns: ")[1].split(" (--wide")[0].split(", ")
    assert hidden and all(header in wide for header in hidden)
    assert "Not shown" not in wide
