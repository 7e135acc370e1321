"""The tests mirror the package: every module of harness/ with behaviour of its own has its test module at the same
place under tests/harness/, named after it (``harness/<stage>/<module>.py`` ->
``tests/harness/<stage>/test_<module>.py``, or a folder ``test_<module>/`` where several files test one module).
The exceptions are listed below, each with its reason; a module added without tests, or a test module left behind
by a rename, fails here."""
from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import ROOT

HARNESS, TESTS = ROOT / "harness", ROOT / "tests" / "harness"

# modules with no behaviour of their own: nothing to test apart from what they name
NO_BEHAVIOUR = {
    # the plugin faces at the top level re-export their home's names (README's plugin example imports them);
    # tests/harness/test_layering.py checks each name is the home's own object
    "answers.py", "data.py", "errors.py", "losses.py", "models.py", "registry.py", "task.py", "teacher.py",
    "api/errors.py",  # exception classes only; each is tested where it is raised
    "api/progress.py",  # the Progress protocol and its no-op (drawn by render/progress.py, tested there)
    "render/formats.py",  # one tuple of format names
    "cli/__main__.py",  # `python -m harness.cli`: calls main()
}

# subcommands: their flags and printing are tested through `opd <command>` in the test module of what they run
SUBCOMMANDS_TESTED_WITH = {
    "accuracy": "workflows/test_accuracy.py", "analyze": "reports/test_analysis.py", "cache": "storage/test_cache.py",
    "compare": "reports/test_compare.py", "findings": "reports/test_findings.py",
    "leaderboard": "reports/test_leaderboard.py", "list": "cli/test_main.py", "plan": "reports/test_plan.py",
    "plot": "render/test_plots.py", "rebuild": "workflows/test_runner/test_faults.py", "run": "cli/test_main.py",
    "suite": "workflows/test_suite.py", "validate": "workflows/test_validate.py", "view": "render/test_viewer.py",
}


def modules() -> list[str]:
    return sorted(str(path.relative_to(HARNESS)) for path in HARNESS.rglob("*.py") if path.name != "__init__.py")


def mirrored(module: str) -> bool:
    folder, name = Path(module).parent, Path(module).stem
    return (TESTS / folder / f"test_{name}.py").is_file() or (TESTS / folder / f"test_{name}").is_dir()


def test_every_module_with_behaviour_has_its_test_module():
    commands = {f"cli/commands/{name}.py" for name in SUBCOMMANDS_TESTED_WITH}
    missing = [m for m in modules() if m not in NO_BEHAVIOUR and m not in commands and not mirrored(m)]
    assert missing == [], f"add tests/harness/<stage>/test_<module>.py for: {missing}"


def test_each_subcommand_is_run_by_the_test_module_named_for_it():
    for command, test_module in SUBCOMMANDS_TESTED_WITH.items():
        assert (HARNESS / "cli" / "commands" / f"{command}.py").is_file(), command
        if mirrored(f"cli/commands/{command}.py"):
            continue
        text = (TESTS / test_module).read_text()
        assert re.search(rf'\[\s*"{command}"\s*,', text), f"{test_module} never runs `opd {command}`"


def test_the_lists_name_only_existing_modules_and_every_test_module_mirrors_one():
    present = set(modules())
    assert NO_BEHAVIOUR <= present, NO_BEHAVIOUR - present
    orphans = []
    for path in TESTS.rglob("test_*"):
        if "__pycache__" in path.parts or (path.is_file() and path.suffix != ".py"):
            continue
        relative = path.relative_to(TESTS)
        if any(part.startswith("test_") for part in relative.parts[:-1]):
            continue  # a file inside a test_<module>/ folder
        source = relative.parent / (relative.name.removeprefix("test_").removesuffix(".py") + ".py")
        if str(source) not in present and relative.parent != Path("."):
            orphans.append(str(relative))
    assert orphans == [], f"test modules that mirror no module of harness/: {orphans}"
