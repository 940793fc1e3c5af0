"""The figures (docs/circuits.md) on useful nodes, faithfulness and the circuit of the shipped default model.

`python scripts/circuit_figures.py` recomputes them (about 10 minutes on 2 idle cores) into
benchmarks/results/circuit_figures.json; `--write-doc` also rewrites the docs/circuits.md block between the
`circuit-figures` markers from that file; `--render` rewrites the block from the stored file only.
tests/test_readme_figures.py checks the block against the file, and (slow) the file against a fresh run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "circuit_figures.json"
DOC = ROOT / "docs" / "circuits.md"  # the page whose block these figures fill
START, END = "<!-- circuit-figures:start -->", "<!-- circuit-figures:end -->"
TABLE_QUESTIONS = 5_000  # per qtype, for the table of ablated node sets
HELD_OUT = 10_000  # per qtype, for the circuit's validation


def compute(table_questions: int = TABLE_QUESTIONS, held_out: int = HELD_OUT) -> dict:
    """Every figure, from the shipped default model (deterministic: fixed seeds throughout)."""
    import torch

    from arithlens.analysis.circuit import discover_circuit
    from arithlens.analysis.faithfulness import all_nodes, measure_faithfulness
    from arithlens.analysis.useful import find_useful, varied_questions
    from arithlens.model import load_checkpoint
    from arithlens.model.zoo import resolve_model

    torch.set_num_threads(2)
    model = load_checkpoint(resolve_model(None)).model.eval()
    spec = model.spec
    screen = find_useful(model, varied_questions(spec), power=0)
    powered = find_useful(model, varied_questions(spec))
    useful = {un.node for un in screen.nodes}
    at_useful = set(screen.useful_positions)
    everything = all_nodes(spec)
    # Each row: the nodes ablated at once (everything else runs clean).
    ablated = {
        "nothing": [],
        "every node outside the useful set": [n for n in everything if n not in useful],
        "the non-useful nodes at useful positions": [n for n in everything if n not in useful and n.position in at_useful],
        "the non-useful heads": [n for n in everything if n not in useful and n.is_head],
        "the non-useful nodes of layer 0": [n for n in everything if n not in useful and n.layer == 0],
        "the non-useful nodes at non-useful positions": [n for n in everything if n.position not in at_useful],
    }
    table = measure_faithfulness(model, {label: [n for n in everything if n not in set(nodes)]
                                         for label, nodes in ablated.items()}, questions_per_qtype=table_questions)
    t0 = time.perf_counter()
    circuit = discover_circuit(model, [un.node for un in powered.nodes], held_out_questions=held_out)
    return {
        "model": spec.name,
        "n_all": len(everything),
        "useful_screen": {"questions": len(screen.questions), "nodes": len(screen.nodes), "positions": len(at_useful)},
        "useful_power": {"questions_per_qtype": powered.power_questions, "nodes": len(powered.nodes),
                         "found": list(powered.power_found),
                         "verdicts": {n: powered.verdict(n) for n in powered.power_found if n in powered.failures}},
        "table_questions": table_questions,
        "table": [{"ablated": label, "n_ablated": len(ablated[label]), **f.to_json()} for label, f in table.items()],
        "circuit": circuit.to_json(),
        "circuit_seconds_wall": round(time.perf_counter() - t0, 1),
    }


def _cell(row: dict) -> str:
    lo, hi = row["ci"]
    return f"{100 * row['exact']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def render(data: dict) -> str:
    """The docs block (markdown) from the stored figures."""
    qtypes = [r["qtype"] for r in data["table"][0]["qtypes"]]
    lines = [f"Shipped default model `{data['model']}`, {data['n_all']} nodes (every head and MLP layer at every "
             f"position). Exact accuracy per qtype with 95% Wilson intervals, on {data['table_questions']:,} fresh "
             "uniform questions per qtype, the ablated nodes replaced by their per-position means over 2,048 mixed "
             f"reference questions. \"Useful\" here is the screen on {data['useful_screen']['questions']} questions: "
             f"{data['useful_screen']['nodes']} nodes at {data['useful_screen']['positions']} positions.", "",
             "| mean-ablated at once | nodes | " + " | ".join(f"{q} exact" for q in qtypes) + " |",
             "|---|---|" + "---|" * len(qtypes)]
    for row in data["table"]:
        lines.append(f"| {row['ablated']} | {row['n_ablated']} | "
                     + " | ".join(_cell(r) for r in row["qtypes"]) + " |")
    power = data["useful_power"]
    lines += ["", f"The power stage ({power['questions_per_qtype']} fresh questions per qtype) finds "
              f"{len(power['found'])} more useful positions or nodes ({', '.join(power['found']) or 'none'}): "
              f"{power['nodes']} useful nodes in all."]
    c = data["circuit"]
    validation = {f["label"]: f for f in c["validation"]}
    n = validation["circuit"]["qtypes"][0]["n"]
    lines += ["", f"The circuit: {c['n_nodes']} nodes ({len(c['only_together'])} of them outside the useful set, "
              f"needed only together; {len(c['useful_left_out'])} useful nodes left out), found by pruning on "
              f"{c['search_questions']} questions ({c['passes']} forward passes, {c['search_seconds']:.0f} s on 2 "
              f"shared cores) and validated on about {n:,} held-out questions per qtype:", "",
              "| node set | nodes | " + " | ".join(f"{q} exact" for q in qtypes) + " | loss recovered |",
              "|---|---|" + "---|" * len(qtypes) + "---|"]
    for label in ("useful", "circuit"):
        f = validation[label]
        rec = " / ".join(f"{100 * r['loss_recovered']:.0f}%" for r in f["qtypes"])
        lines.append(f"| {label} | {f['n_nodes']} | " + " | ".join(_cell(r) for r in f["qtypes"]) + f" | {rec} |")
    costly = sorted(c["minimality"], key=lambda m: -m["lost"])
    free = sum(1 for m in costly if m["lost"] <= 0)
    lines += ["", f"Minimality (each circuit node removed alone, on {c['minimality_questions']} other questions): "
              "the costliest are " + ", ".join(f"{m['node']} ({100 * m['lost']:.1f}%)" for m in costly[:3])
              + f"; {free} nodes cost nothing alone (they matter together with others)."]
    return "\n".join(lines)


def replace_block(doc: Path, start: str, end: str, body: str) -> None:
    """Rewrite the page `doc` between the `start` and `end` markers with `body` (shared with atlas_seeds.py)."""
    text = doc.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        sys.exit(f"error: {doc.relative_to(ROOT)} has no {start} ... {end} block")
    doc.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text))


def store(path: Path, data: dict) -> None:
    """Write a results JSON in one rename (shared with atlas_seeds.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def write_doc(data: dict) -> None:
    replace_block(DOC, START, END, render(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-doc", action="store_true", help="Also rewrite the block in docs/circuits.md.")
    parser.add_argument("--render", action="store_true", help="Only rewrite the docs/circuits.md block from the stored file.")
    args = parser.parse_args()
    if args.render:
        write_doc(json.loads(RESULTS.read_text()))
        return
    data = compute()
    store(RESULTS, data)
    print(render(data))
    if args.write_doc:
        write_doc(data)


if __name__ == "__main__":
    main()
