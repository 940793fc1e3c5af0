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
}

# The result types analysis builds and returns (results sit below analysis for them); the other result types are
# still typed views the API builds from analysis's records.
ANALYSIS_RESULT_TYPES = {("arithlens.analysis.circuit", "arithlens.results.circuits"),
                         ("arithlens.analysis.analyze", "arithlens.results.circuits"),  # the edge card's type
                         ("arithlens.analysis.faithfulness", "arithlens.results.circuits"),
                         ("arithlens.analysis.circuits.card", "arithlens.results.circuits"),
                         ("arithlens.analysis.circuits.robust", "arithlens.results.circuits"),
                         ("arithlens.analysis.circuits.scoring", "arithlens.results.circuits")}


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
    """Imports from below the API (arith, model, analysis, results) of api, cli, commands or report; a result's
    one-line notebook view that hands itself to report (`delegations`) is not one."""
    return {(a, b) for a, b in edges if _within(a, BELOW_THE_API) and _within(b, ABOVE)}


def delegations(root: Path = SRC) -> tuple[set[tuple[str, str]], list[str]]:
    """(results -> report imports made inside a method that only imports and returns, the other methods that
    import report: presentation code left in a result)."""
    ok, bad = set(), []
    for path in sorted((root / "arithlens" / "results").rglob("*.py")):
        module = _module_name(path, root)
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            # a docstring and argument checks (`if ...: raise`) may come first
            body = [n for n in fn.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
                    and not (isinstance(n, ast.If) and all(isinstance(b, ast.Raise) for b in n.body))]
            reports = {n.module for n in ast.walk(fn) if isinstance(n, ast.ImportFrom)
                       and (n.module or "").startswith("arithlens.report")}
            if not reports:
                continue
            imports_then_returns = (all(isinstance(n, ast.ImportFrom) for n in body[:-1])
                                    and isinstance(body[-1], ast.Return))
            if imports_then_returns:
                ok |= {(module, r) for r in reports}
            else:
                bad.append(f"{module}.{fn.name}")
    return ok, bad


def command_imports(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Imports from commands of anything but the API, io, report, errors, validate and commands._common."""
    return {(a, b) for a, b in edges
            if _within(a, ("arithlens.commands",)) and not _within(b, ("arithlens.commands",) + COMMANDS_MAY_IMPORT)}


@pytest.fixture(scope="module")
def edges() -> set[tuple[str, str]]:
    return import_graph()


def test_nothing_below_the_api_imports_the_api_cli_commands_or_report(edges):
    new = upward_imports(edges) - KNOWN_UPWARD - delegations()[0]
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


def test_results_hold_no_presentation_code():
    """A result's plot_*, summary() and _repr_html_ only hand the result to report (an import and a return)."""
    ok, bad = delegations()
    assert not bad, f"presentation code inside results (move it to report): {bad}"
    assert ("arithlens.results.node_study", "arithlens.report.result_views") in ok  # the check sees them


def test_analysis_imports_only_the_result_types_it_returns(edges):
    """The faithfulness and circuit types live in results and analysis builds them; the other results are typed
    views built by the API (they read analysis's records), so analysis must not reach for them."""
    into = {(a, b) for a, b in edges if _within(a, ("arithlens.analysis", "arithlens.interventions"))
            and _within(b, ("arithlens.results",))}
    assert into == ANALYSIS_RESULT_TYPES, f"analysis imports results: {sorted(into - ANALYSIS_RESULT_TYPES)}"
    # and those types need nothing of analysis but its arithmetic (a Wilson interval)
    down = {b for a, b in edges if a == "arithlens.results.circuits" and _within(b, ("arithlens.analysis",))}
    assert down <= {"arithlens.analysis.stats"}, sorted(down)


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
