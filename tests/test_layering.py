"""The layering of docs/ARCHITECTURE.md, read off the source with `ast`: every import of an arithlens module,
at the top of a file or inside a function, counts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

BELOW_THE_API = ("arithlens.arith", "arithlens.model", "arithlens.interventions", "arithlens.analysis",
                 "arithlens.results")
ABOVE = ("arithlens.api", "arithlens.cli", "arithlens.commands", "arithlens.report")
COMMANDS_MAY_IMPORT = ("arithlens.api", "arithlens.io", "arithlens.report", "arithlens.errors", "arithlens.validate",
                       "arithlens.commands._common")

# Arrows that still run up, each to be removed by the work named beside it; nothing may join them.
KNOWN_UPWARD = {
    # The verdict's words (report.node_text) are kept in the study JSON so outputs stay byte-identical; the
    # front door should word the verdict when it saves the result.
    ("arithlens.analysis.node_study.study", "arithlens.report.node_text"),
    # plot_* and summary() on the result types: "one result form" moves them to report functions taking results.
    ("arithlens.results", "arithlens.report.features"),
    ("arithlens.results", "arithlens.report.figures"),
    ("arithlens.results", "arithlens.report.interactive"),
    ("arithlens.results", "arithlens.report.node_figures"),
    ("arithlens.results", "arithlens.report.node_text"),
    ("arithlens.results", "arithlens.report.quanta_maps"),
}

def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str, is_package: bool) -> set[str]:
    """The arithlens modules `module` imports (`from arithlens import api` counts as `arithlens.api`)."""
    out = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if base == "arithlens"}
    return {name for name in out if name.startswith("arithlens.")}


def import_graph(root: Path = SRC) -> set[tuple[str, str]]:
    edges = set()
    for path in sorted((root / "arithlens").rglob("*.py")):
        module = _module_name(path, root)
        edges |= {(module, target) for target in _imports(path.read_text(), module, path.name == "__init__.py")}
    return edges


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def upward_imports(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Imports from below the API (arith, model, analysis, results) of api, cli, commands or report."""
    return {(a, b) for a, b in edges if _within(a, BELOW_THE_API) and _within(b, ABOVE)}


def command_imports(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Imports from commands of anything but the API, io, report, errors, validate and commands._common."""
    return {(a, b) for a, b in edges
            if _within(a, ("arithlens.commands",)) and not _within(b, ("arithlens.commands",) + COMMANDS_MAY_IMPORT)}


@pytest.fixture(scope="module")
def edges() -> set[tuple[str, str]]:
    return import_graph()


def test_nothing_below_the_api_imports_the_api_cli_commands_or_report(edges):
    new = upward_imports(edges) - KNOWN_UPWARD
    assert not new, f"new imports up the layers: {sorted(new)}"


def test_analysis_imports_no_report_but_the_one_known_arrow(edges):
    into_report = {(a, b) for a, b in edges if _within(a, ("arithlens.analysis",)) and _within(b, ("arithlens.report",))}
    assert into_report == {("arithlens.analysis.node_study.study", "arithlens.report.node_text")}


def test_the_layers_below_analysis_do_not_import_it(edges):
    """arith <- model <- interventions <- analysis: each imports only the ones before it."""
    order = ("arithlens.arith", "arithlens.model", "arithlens.interventions", "arithlens.analysis")
    up = {(a, b) for a, b in edges for i, low in enumerate(order)
          if _within(a, (low,)) and _within(b, order[i + 1:])}
    assert not up, f"imports up from below analysis: {sorted(up)}"


def test_analysis_does_not_import_the_result_views(edges):
    """results.py builds on analysis (the typed views of its dicts), never the other way round."""
    up = {(a, b) for a, b in edges if _within(a, ("arithlens.analysis", "arithlens.interventions"))
          and _within(b, ("arithlens.results",))}
    assert not up, f"analysis imports results: {sorted(up)}"


def test_commands_import_only_the_api_io_report_errors_and_validate(edges):
    """The front door is one: a command parses options, calls the API, saves with io and prints from report."""
    past = command_imports(edges)
    assert not past, f"command imports past the API (go through arithlens.api): {sorted(past)}"


def test_the_api_is_the_only_door_the_cli_uses(edges):
    """cli.py reaches the work only through the commands (it may import errors and io for its error lines)."""
    past = {(a, b) for a, b in edges if a == "arithlens.cli"
            and not _within(b, ("arithlens.commands", "arithlens.errors", "arithlens.io"))}
    assert not past, f"cli imports past the commands: {sorted(past)}"


def test_the_checks_see_a_planted_violation(tmp_path):
    """The graph reader finds function-level, relative and `from arithlens import x` imports."""
    pkg = tmp_path / "arithlens"
    (pkg / "analysis").mkdir(parents=True)
    (pkg / "commands").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "analysis" / "__init__.py").write_text("")
    (pkg / "analysis" / "x.py").write_text("def f():\n    from arithlens import api\n    from ..report import text\n")
    (pkg / "commands" / "__init__.py").write_text("")
    (pkg / "commands" / "y.py").write_text("from arithlens.analysis.x import f\nfrom arithlens.api import g\n")
    edges = import_graph(tmp_path)
    assert upward_imports(edges) == {("arithlens.analysis.x", "arithlens.api"),
                                     ("arithlens.analysis.x", "arithlens.report")}
    assert command_imports(edges) == {("arithlens.commands.y", "arithlens.analysis.x")}
