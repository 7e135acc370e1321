"""The harness's import structure, read from the sources with ``ast``: every module belongs to one stage of the data
flow, a stage imports only the stages below it, no modules import each other in a circle, and the reports and the
renderers never reach the sampling stage or torch. Imports inside functions and under ``TYPE_CHECKING`` count: a
circle closed at call time is still a circle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# lowest first: a module may import its own stage and the stages before it, never one after it
STAGES = ("api", "storage", "sampling", "diagnostic", "reports", "render", "workflows", "cli")
# the old flat paths that plugin files import (README's example: harness.teacher; --include files register tasks,
# teachers, models and losses); each re-exports one module
PLUGIN_FACES = {"harness.task": "harness.api.task", "harness.teacher": "harness.sampling.teacher",
                "harness.registry": "harness.api.registry", "harness.errors": "harness.api.errors",
                "harness.answers": "harness.api.answers", "harness.data": "harness.api.data",
                "harness.models": "harness.sampling.models", "harness.losses": "harness.diagnostic.losses"}
TORCH_LIBRARIES = frozenset({"torch", "transformers", "vllm", "trl", "accelerate", "safetensors"})
# imports made by name at run time (importlib), which ast cannot see: harness.cli.main imports every module of
# harness.cli.commands to register its subcommand, so a command importing harness.cli.main would close a circle
RUNTIME_IMPORTS = {"harness.cli.main": "harness.cli.commands."}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, name: str, is_package: bool) -> set[str]:
    """Every dotted name ``source`` imports anywhere (module level, functions, ``TYPE_CHECKING`` blocks): for
    ``from a.b import c`` both ``a.b`` and ``a.b.c`` (the caller keeps whichever is a module)."""
    names: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def read_modules(root: Path, package: str) -> dict[str, tuple[set[str], bool]]:
    """module -> (the names it imports, whether it is a package) for every .py file under ``root/package``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        name = module_name(path, root)
        is_package = path.name == "__init__.py"
        modules[name] = (imported_names(path.read_text(encoding="utf-8"), name, is_package), is_package)
    return modules


def internal_graph(modules: dict[str, tuple[set[str], bool]]) -> dict[str, set[str]]:
    """module -> the modules of the same tree it imports (a name that is not a module counts as its module)."""
    graph: dict[str, set[str]] = {}
    for name, (imports, _) in modules.items():
        targets = set()
        for imported in imports:
            target = imported if imported in modules else imported.rpartition(".")[0]
            if target in modules and target != name:
                targets.add(target)
        prefix = RUNTIME_IMPORTS.get(name)
        if prefix:
            targets.update(m for m in modules if m.startswith(prefix))
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as [a, b, ..., a], or None when there is none (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


MODULES = read_modules(ROOT, "harness")
GRAPH = internal_graph(MODULES)


# ------------------------------------------------------------------------------------------- the checker itself


def test_the_cycle_finder_flags_a_hand_made_circle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None


def test_imports_inside_functions_and_relative_imports_are_read(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "one.py").write_text("def f():\n    from pkg.sub import two\n    return two\n")
    (package / "sub" / "two.py").write_text("if True:\n    from ..one import f\n")
    graph = internal_graph(read_modules(tmp_path, "pkg"))
    assert graph["pkg.one"] == {"pkg.sub", "pkg.sub.two"} and graph["pkg.sub.two"] == {"pkg.one"}
    assert find_cycle(graph) == ["pkg.one", "pkg.sub.two", "pkg.one"]


# ------------------------------------------------------------------------------------------- the harness


def test_every_module_belongs_to_a_stage_or_is_a_plugin_face():
    homeless = [m for m in MODULES if stage_of(m) is None and m != "harness" and m not in PLUGIN_FACES]
    assert not homeless, f"modules outside every stage of {STAGES}: {homeless}"
    assert {m.split(".")[1] for m in MODULES if stage_of(m)} == set(STAGES)


def test_no_circle_among_the_harness_modules():
    assert find_cycle(GRAPH) is None, f"import circle: {' -> '.join(find_cycle(GRAPH))}"


def test_no_stage_imports_a_later_stage():
    upward = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
              if stage_of(a) and stage_of(b) and STAGES.index(stage_of(b)) > STAGES.index(stage_of(a))]
    assert not upward, f"imports from a lower stage to a higher one (order {STAGES}): {sorted(upward)}"


@pytest.mark.parametrize("stage", ["reports", "render"])
def test_reports_and_render_never_reach_sampling_or_torch(stage):
    problems = []
    for module in (m for m in MODULES if stage_of(m) == stage):
        for reached in sorted({module} | reachable(GRAPH, module)):
            if stage_of(reached) == "sampling":
                problems.append(f"{module} reaches {reached}")
            heavy = {name.split(".")[0] for name in MODULES[reached][0]} & TORCH_LIBRARIES
            if heavy:
                problems.append(f"{module} reaches {reached}, which imports {sorted(heavy)}")
    assert not problems, problems


def test_plugin_faces_only_re_export_and_nothing_inside_imports_them():
    for face, home in PLUGIN_FACES.items():
        assert GRAPH[face] == {home}, (face, GRAPH[face])
    inside = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets & PLUGIN_FACES.keys()]
    plugins = {**read_modules(ROOT, "tasks"), **read_modules(ROOT, "teachers")}
    inside += [f"{name} -> {face}" for name, (imports, _) in plugins.items() for face in imports & PLUGIN_FACES.keys()]
    assert not inside, f"the harness's own modules import the new paths: {inside}"


@pytest.mark.parametrize("face", sorted(PLUGIN_FACES))
def test_a_plugin_face_hands_on_every_public_name_of_its_home(face):
    import importlib

    old, home = importlib.import_module(face), importlib.import_module(PLUGIN_FACES[face])
    public = getattr(home, "__all__", None) or [name for name in vars(home) if not name.startswith("_")]
    assert public and all(getattr(old, name) is getattr(home, name) for name in public)
