"""The house rules, as tests that fail when one breaks (docs/architecture.md says why each rule exists).

- engine/ imports neither Streamlit nor bench/; pages import no CLI module and run no SQL.
- The engine's import graph (every import, at the top or inside a function) has no circle, and the packages import
  one way: a package may import only packages of a lower layer (LAYERS).
- An import of an engine module inside a function says why in a comment (start-up time), since it hides a dependency.
- Every BELLWETHER_* variable is read in engine/settings.py only, and every one of them is in the README.
- Every command of `python -m engine` is in the README.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from engine.cli.main import build_parser
from tests.conftest import ROOT

ENGINE = ROOT / "engine"
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Lower layers first. A module may import its own package and any package of a lower layer, never a higher one.
LAYERS = [
    {"engine.errors", "engine.settings", "engine.text", "engine.i18n"},
    {"engine.paths"},
    {"engine.db", "engine.export", "engine.vault"},
    {"engine.access"},
    {"engine.models"},
    {"engine.data"},
    {"engine.jobs"},
    {"engine.training", "engine.reports", "engine.monitor"},
    {"engine.review"},
    {"engine.cli", "engine.__main__"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in inner) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(f"{node.module}.{a.name}", node.lineno, id(node) in inner) for a in node.names]
            found.append((node.module, node.lineno, id(node) in inner))
    return found


def _engine_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ENGINE.rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    modules = _engine_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _, _ in _imports(path):
            if target in modules and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def _layer(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: add its package to LAYERS")


def test_engine_imports_neither_streamlit_nor_bench():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {target}"
                 for path in ENGINE.rglob("*.py") for target, line, _ in _imports(path)
                 if target.split(".")[0] in ("streamlit", "bench")]
    assert not offenders, offenders


def test_pages_import_no_cli_module_and_run_no_sql():
    offenders = []
    for path in [*(ROOT / "views").glob("*.py"), ROOT / "streamlit_app.py"]:
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.name}:{line} imports {t}" for t, line, _ in _imports(path) if t.startswith("engine.cli")]
        offenders += [f"{path.name}: runs SQL ({m.group(0)!r})" for m in re.finditer(
            r"\.(execute|executemany|query)\(|\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b", text)]
    assert not offenders, offenders


def test_there_is_no_pages_folder():
    """Streamlit runs the files of a folder named pages/ beside the app by themselves, with a navigation made of their
    file names, on a fresh server until streamlit_app.py has run once: the screens live in views/ instead."""
    assert not (ROOT / "pages").exists()


def test_the_engine_import_graph_has_no_circle():
    graph = _graph()
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif not state.get(target):
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [node])
    assert not circles, circles


def test_packages_import_downwards_only():
    upward = [f"{src} imports {dst}" for src, targets in _graph().items() for dst in targets
              if _layer(dst) > _layer(src)]
    assert not upward, upward


def test_an_engine_import_inside_a_function_says_why():
    silent = []
    for path in ENGINE.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for target, line, inside in _imports(path):
            if inside and target.startswith("engine.") and "#" not in lines[line - 1] \
                    and not lines[line - 2].strip().startswith("#"):
                silent.append(f"{path.relative_to(ROOT)}:{line}")
    assert not sorted(set(silent)), sorted(set(silent))


def test_environment_variables_are_read_in_settings_only_and_all_documented():
    from engine import settings

    readers = []
    for path in [*ENGINE.rglob("*.py"), *(ROOT / "views").glob("*.py"), ROOT / "streamlit_app.py"]:
        if path.name == "settings.py" and path.parent == ENGINE:
            continue
        for m in re.finditer(r"(environ\.get|getenv)\(\s*f?[\"']BELLWETHER_\w*", path.read_text(encoding="utf-8")):
            readers.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not readers, readers
    undocumented = [s.name for s in settings.SETTINGS if f"`{s.name}`" not in README]
    assert not undocumented, undocumented


def _commands(parser, prefix=()) -> list[tuple[str, ...]]:
    found = []
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                if name.startswith("_"):  # hidden: the supervisor's and torchrun's entry points
                    continue
                deeper = _commands(sub, prefix + (name,))
                found += deeper or [prefix + (name,)]
    return found


def test_every_cli_command_is_in_the_readme():
    commands = _commands(build_parser())
    assert len(commands) > 20  # the walk found the sub-commands, not just the groups
    missing = []
    for command in commands:
        group, *rest = command
        # "python -m engine runs cancel 7 | resume 7" documents both; a group's sub-command may follow its group
        if not rest:
            ok = re.search(rf"python -m engine {re.escape(group)}\b", README)
        else:
            ok = re.search(rf"python -m engine {re.escape(group)}\b[^\n]*\b{re.escape(rest[-1])}\b", README)
        if not ok:
            missing.append(" ".join(command))
    assert not missing, f"commands missing from the README: {missing}"


@pytest.mark.parametrize("rule", ["no circle", "downwards"])
def test_the_graph_checks_can_fail(rule, monkeypatch):
    """The checks above catch what they claim: a made-up circle and a made-up upward import are reported."""
    graph = _graph()
    graph["engine.jobs.queue"].add("engine.training.finetune")
    import tests.test_architecture as me

    monkeypatch.setattr(me, "_graph", lambda: graph)
    check = me.test_the_engine_import_graph_has_no_circle if rule == "no circle" else me.test_packages_import_downwards_only
    with pytest.raises(AssertionError):
        check()


def test_no_merge_conflict_markers_are_left_in_tracked_files():
    """A merge once left <<<<<<< / >>>>>>> blocks in the README and the architecture notes, unnoticed by every test."""
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    marked = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".txt", ".toml", ".ini", ".cfg", "") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"^(<{7} |>{7} )", text, re.M):
            marked.append(name)
    assert not marked, marked


def test_every_chart_goes_through_the_shared_chart_style():
    """Legends and colour bars clear of Plotly's toolbar on every page: each st.plotly_chart(...) is given
    chart_style(figure) (views/_shared.py), not a bare figure."""
    import ast

    bare = []
    for path in sorted((ROOT / "views").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "plotly_chart"):
                first = node.args[0] if node.args else None
                if not (isinstance(first, ast.Call) and getattr(first.func, "id", "") == "chart_style"):
                    bare.append(f"{path.name}:{node.lineno}")
    assert not bare, f"charts shown without chart_style(): {bare}"
