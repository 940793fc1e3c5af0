"""Every file of `arithlens analyze`: the behaviour, algorithm, search, study, faithfulness, circuit and edge-circuit
JSON, the HTML report with its maps and figures, and `analysis.json`, staged and moved into --out together."""

from __future__ import annotations

import json
import os
import time


def write_analysis(analysis, target, *, card: dict, source: str, formats, progress, start: float, drawer=None):
    """Every file, written into the target's staging folder and moved into --out only when all of them are there."""
    import torch

    from arithlens.analysis.analyze import circuit_record, faithfulness_record
    from arithlens.analysis.atlas import CIRCUIT_FILE, FAITHFULNESS_FILE
    from arithlens.analysis.node_study import NodeStudy
    from arithlens.io import write_atomic
    from arithlens.report.founding import founding_sentence
    from arithlens.report.html import write_report
    from arithlens.report.node_json import write_study
    from arithlens.report.node_lists import write_algorithm, write_behavior

    spec, stage = analysis.spec, target.stage
    t0 = time.perf_counter()
    files = [write_behavior(analysis.useful.nodes, stage / f"{spec.base_name}_behavior.json")]
    if analysis.search is not None:
        files.append(write_algorithm(analysis.search.nodes, stage / f"{spec.base_name}_algorithm.json"))
        record = {**analysis.search.to_json(), "claims": [c.to_dict() for c in analysis.claims]}
        files.append(stage / f"{spec.base_name}_search.json")
        write_atomic(files[-1], (json.dumps(record, indent=1) + "\n").encode())
    for entry in analysis.studies:
        if entry.data is not None:
            files.append(write_study(NodeStudy(entry.target.node, entry.data), stage))
    for name, record in ((FAITHFULNESS_FILE, analysis.faithfulness and faithfulness_record(analysis.faithfulness)),
                         (CIRCUIT_FILE, analysis.circuit and circuit_record(analysis.circuit))):
        if record:
            files.append(stage / name)
            write_atomic(files[-1], (json.dumps(record, indent=1, allow_nan=False) + "\n").encode())
    if analysis.edge_circuit is not None:
        files.append(stage / f"{spec.base_name}_edges.json")
        write_atomic(files[-1], (json.dumps(edges_file_record(analysis.edge_circuit, spec.name), indent=1,
                                            allow_nan=False) + "\n").encode())
    json_seconds = time.perf_counter() - t0
    report = write_report(analysis, stage, card=card, source=source, formats=formats, progress=progress,
                          drawer=drawer)
    files += [*report.all]
    timings = {**analysis.timings, "json": json_seconds, **report.timings}
    timings["total"] = time.perf_counter() - start
    # Wall times on a shared machine mean little alone: the CPU time and the load say how busy it was.
    timings["cpu"] = time.process_time()
    summary = {**analysis.summary(), "founding": founding_sentence(analysis), "source": source, "timings": {k: round(v, 2) for k, v in timings.items()},
               "load_average": [round(x, 2) for x in os.getloadavg()], "threads": torch.get_num_threads(),
               "report": "report.html", "files": sorted(p.name for p in files) + ["analysis.json"]}
    write_atomic(stage / "analysis.json", (json.dumps(summary, indent=1, allow_nan=False) + "\n").encode())
    files.append(stage / "analysis.json")
    moved = [target.final(f) for f in files]
    target.commit()
    return moved, timings


def edges_file_record(circuit, model_name: str, target: float | None = None) -> dict:
    """`<model>_edges.json`, as `arithlens edges` writes it: the circuit's edges, nodes, scores and exact rates,
    and whether it reached `target` (default: discovery's) on its held-out questions."""
    from arithlens.analysis.edges.discovery import TARGET

    target = TARGET if target is None else target
    return {"model": model_name, "target": target, "reached": min(circuit.exact.values()) >= target,
            **circuit.to_dict()}
