"""`arithlens faithfulness` (a node set's accuracy with everything else ablated) and `arithlens circuit`
(find a small faithful node set)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from arithlens.commands._common import (
    Device, Progress, count_option, device_option, json_option, model_option, quiet_option,
    seed_option, sweep_threads_option, thread_limit,
)
from arithlens.errors import ArithLensError


def _write_json(target, name: str | None, data: dict) -> Path:
    """Write `data` through an entered OutputTarget (a folder target when `name` is given) and commit it."""
    from arithlens.io import write_atomic

    staged = target.stage / name if name is not None else target.staged_file
    write_atomic(staged, (json.dumps(data, indent=1) + "\n").encode())
    final = target.final(staged) if name is not None else target.path
    target.commit()
    return final


def _check_node_file(path: Path, spec) -> None:
    """The node file must be this model's: by the model its JSON names, and by the model its file name names."""
    from arithlens.validate import check_same_model, model_named_by_file

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None  # read_node_set reports unreadable files and reads plain-text name lists
    if isinstance(data, dict) and isinstance(data.get("model"), str):
        check_same_model(data["model"], spec, f"--nodes '{path}'")
    check_same_model(model_named_by_file(path), spec, f"--nodes '{path}' (by its file name)")


def _useful_nodes(net, progress):
    from arithlens.api import find_useful

    return [un.node for un in find_useful(net, progress=progress).nodes]


def _table(results) -> list[str]:
    """A plain table: one row per node set, exact accuracy per qtype with its 95% interval."""
    first = results[0]
    lines = [f"{'set':<12} {'nodes':>5}  " + "  ".join(f"{r.qtype + ' exact [95% CI]':<24}" for r in first.qtypes)
             + "  loss recovered"]
    for f in results:
        cells = [f"{100 * r.exact:6.2f}% [{100 * r.ci[0]:.2f}, {100 * r.ci[1]:.2f}]" for r in f.qtypes]
        rec = " ".join(f"{100 * r.loss_recovered:.0f}%" for r in f.qtypes)
        lines.append(f"{f.label:<12} {len(f.nodes):>5}  " + "  ".join(f"{c:<24}" for c in cells) + f"  {rec}")
    n = ", ".join(f"{r.qtype} {r.n}" for r in first.qtypes)
    lines.append(f"questions per qtype: {n}; {first.ablation} ablation of every node outside the set "
                 f"({first.n_all} heads and MLP layers in all), values from {first.reference} reference questions")
    return lines


def register(app: typer.Typer) -> None:
    @app.command()
    def faithfulness(
        nodes: str = typer.Option(..., "--nodes", help="A node-set file (behaviour / circuit JSON, or names), "
                                  "'useful' (find the useful nodes first) or 'circuit' (discover one first: minutes)."),
        model: Optional[str] = model_option(),
        questions: int = count_option(10_000, "--questions", "Fresh uniform questions per qtype."),
        seed: int = seed_option(140_014, "Seed of the questions and the reference batch."),
        ablation: str = typer.Option("mean", "--ablation", help="mean or resample."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also write the result JSON to this file."),
        threads: Optional[int] = sweep_threads_option(),
        device: Device = device_option(),
        as_json: bool = json_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Accuracy of the model with every head and MLP layer outside a node set ablated at once.

        Per qtype: exact accuracy with a 95% interval, per answer digit, and the share of the loss and
        logit difference recovered between everything ablated (0) and the clean model (1).
        Examples: `arithlens faithfulness --nodes useful`; `arithlens faithfulness --nodes out/x_circuit.json --json`.
        """
        from arithlens.api import discover_circuit, faithfulness_of, load_checkpoint, parse_node, read_node_set
        from arithlens.io import OutputTarget
        from arithlens.validate import check_choice, check_command_memory

        check_choice("--ablation", ablation, ("mean", "resample"))
        target = OutputTarget(out, "file", "--out") if out is not None else None  # checked before the work
        net = load_checkpoint(model, device).model
        # one chunk of questions is in memory at a time, whatever --questions asks for
        check_command_memory("faithfulness", net.spec, {"questions": questions, "nodes": nodes}, {})
        node_set, label = [], nodes
        if nodes not in ("useful", "circuit"):
            _check_node_file(Path(nodes), net.spec)
            node_set, label = read_node_set(Path(nodes), net.spec), Path(nodes).name
        result = None
        with thread_limit(threads), Progress(quiet or as_json) as bar:
            progress = None if bar.quiet else bar
            if nodes == "useful":
                node_set, label = _useful_nodes(net, progress), "useful"
            elif nodes == "circuit":
                found = discover_circuit(net, _useful_nodes(net, progress), seed=seed, held_out=questions,
                                         progress=progress)
                node_set, label = [parse_node(n, net.spec) for n in found.nodes], "circuit"
                if ablation == "mean":  # the discovery measured exactly this on its held-out questions
                    result = found.faithfulness("circuit")
            if result is None:
                result = faithfulness_of(net, node_set, label, questions=questions, seed=seed, ablation=ablation)
        _report(result, target, as_json)

    @app.command()
    def circuit(
        out: Path = typer.Option(..., "--out", help="Output directory (`<model>_circuit.json`)."),
        model: Optional[str] = model_option(),
        target: float = typer.Option(0.99, "--target", help="Exact accuracy asked per qtype, at 95% confidence."),
        search_questions: int = count_option(600, "--search-questions", "Search questions per qtype."),
        held_out: int = count_option(10_000, "--held-out", "Held-out questions per qtype for the validation."),
        seed: int = seed_option(140_014, "Seed of every question set and the reference batch."),
        threads: Optional[int] = sweep_threads_option(),
        device: Device = device_option(),
        as_json: bool = json_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Find a small node set that stays faithful (>= --target exact per qtype with everything else
        mean-ablated): greedy pruning, later layers and positions first, seeded by the useful nodes.

        Writes `<model>_circuit.json`: the nodes, each node's cost when removed alone, and the faithfulness
        of the circuit and of the useful set on held-out questions.
        Example: `arithlens circuit --out out/`.
        """
        from arithlens.api import discover_circuit, load_checkpoint
        from arithlens.io import OutputTarget
        from arithlens.validate import check_command_memory

        if not 0 < target <= 1:
            raise ArithLensError(f"--target must be in (0, 1], not {target}")
        out_target = OutputTarget(out, "dir", "--out")  # checked before the work
        net = load_checkpoint(model, device).model
        check_command_memory("circuit", net.spec, {"search_questions": search_questions, "held_out": held_out},
                             {"search_questions": "the circuit search"})
        with out_target, thread_limit(threads):
            with Progress(quiet or as_json) as bar:
                progress = None if bar.quiet else bar
                found = discover_circuit(net, _useful_nodes(net, progress), target=target,
                                         search_questions=search_questions, held_out=held_out, seed=seed,
                                         progress=progress)
            path = _write_json(out_target, f"{net.spec.base_name}_circuit.json", found.to_dict())
        if as_json:
            sys.stdout.write(json.dumps({**found.to_dict(), "file": str(path)}) + "\n")
            return
        echo = typer.echo
        echo(f"{found.model}: circuit of {len(found.nodes)} nodes (useful set: {len(found.useful)}; "
             f"{len(found.only_together)} needed only together, {len(found.useful_left_out)} useful left out), "
             f"found in {found.search_seconds:.0f} s ({found.passes} passes on {found.search_questions} questions)")
        echo(" ".join(found.nodes))
        for line in _table([found.faithfulness("useful"), found.faithfulness("circuit")]):
            echo(line)
        costly = sorted(found.minimality, key=lambda c: -c.lost)[:5]
        echo("costliest nodes (exact lost when removed alone): "
             + ", ".join(f"{c.node} {100 * c.lost:.1f}%" for c in costly))
        echo(f"wrote {path}")


def _report(result, target, as_json: bool) -> None:
    path = None
    if target is not None:
        with target:
            path = _write_json(target, None, result.to_dict())
    if as_json:
        data = result.to_dict()
        if path is not None:
            data["file"] = str(path)
        sys.stdout.write(json.dumps(data) + "\n")
        return
    for line in _table([result]):
        typer.echo(line)
    for row in result.qtypes:
        typer.echo(f"  {row.qtype} per digit: " + " ".join(f"{d} {100 * k / row.n:.1f}%" for d, k in row.digit_correct))
    if path is not None:
        typer.echo(f"wrote {path}")
