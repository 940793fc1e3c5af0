"""Purposes on an edge circuit through the front door: each head and MLP of the circuit with its sub-task tags (the
analysis's, or a search's run on it) or, unexplained, with what fails when it alone is removed from the circuit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from arithlens.api._checks import check_batch, check_model
from arithlens.errors import ArgumentTypeError
from arithlens.results.purposes import CircuitPurposes
from arithlens.validate import check_count, check_same_model, check_seed

if TYPE_CHECKING:
    from arithlens.analysis.edges.discovery import EdgeCircuit
    from arithlens.analysis.nodes import NodeList
    from arithlens.arith.questions import QuestionBatch
    from arithlens.model.transformer import HookedTransformer


def tagged_nodes(source) -> NodeList:
    """The analysis's tagged nodes from what the caller has: an `Analysis` (the pipeline's record), an
    `AnalysisReport`, a `SearchReport` or `UsefulNodes`, a `NodeList`, or None (no node has a purpose yet)."""
    from arithlens.analysis.nodes import NodeList
    from arithlens.results import AnalysisReport

    if source is None:
        return NodeList()
    if isinstance(source, NodeList):
        return source
    if isinstance(source, AnalysisReport):
        part = source.search if source.search is not None else source.useful
        return part.node_list() if part is not None else NodeList()
    if hasattr(source, "node_list"):
        return source.node_list()
    if isinstance(getattr(source, "nodes", None), NodeList):  # analysis.analyze.Analysis
        return source.nodes
    raise ArgumentTypeError(f"nodes must be an analysis, a search or useful-nodes result or a NodeList, not "
                            f"{type(source).__name__}")


def circuit_purposes(model: HookedTransformer, circuit: EdgeCircuit | Mapping, nodes=None, *, questions: int = 100,
                     pairs: int = 100, seed: int | None = None, question_set: QuestionBatch | None = None,
                     studies: bool = False, progress=None) -> CircuitPurposes:
    """Every head and MLP of `circuit` (an `EdgeCircuit`, or its `to_dict()`) with its purpose.

    `nodes`: the analysis's tagged nodes (`analyze(...)`'s report, `run_analysis(...)`, a search result); a node
    with an Algo tag there keeps it. Each other node is removed from the circuit alone on `questions` fresh
    questions per qtype (exact: a question fails when any answer token is wrong; only questions the intact
    circuit answers right are judged), tagged from that, and given the sub-task searches (`pairs` per sub-task and
    digit; 0: no search). What still has no purpose lists the qtypes and answer digits its removal fails, or
    "needed only together". `question_set`: one set to judge and take ablation values on (a planted model's).
    `studies`: also study each head still without a purpose (`study_node` at analyze's defaults, seconds a head);
    a study whose verdict finds a carry/borrow role gives the head its tags as a purpose (source "study")."""
    from arithlens.analysis.circuits.purposes import circuit_purposes as run
    from arithlens.analysis.edges.discovery import EdgeCircuit
    from arithlens.analysis.faithfulness import FAITHFULNESS_SEED

    check_model(model)
    check_count("questions", questions, low=1)
    check_count("pairs", pairs, low=0)
    seed = FAITHFULNESS_SEED if seed is None else check_seed(seed, "seed")
    if isinstance(circuit, Mapping):
        check_same_model(circuit.get("model"), model.spec, "the circuit")
        circuit = EdgeCircuit.from_dict(circuit, model.spec)
    elif not isinstance(circuit, EdgeCircuit):
        raise ArgumentTypeError(f"circuit must be an EdgeCircuit (edge_circuit(...)) or its to_dict(), not "
                                f"{type(circuit).__name__}")
    if question_set is not None:
        check_batch(model, question_set)
    if not isinstance(studies, bool):
        raise ArgumentTypeError(f"studies must be True or False, not {type(studies).__name__}")
    say = None if progress is None else (lambda stage, done, total: progress(stage, done, total))
    record = run(model, circuit, tagged_nodes(nodes), questions=question_set, per_qtype=questions,
                 reference=question_set, pairs=pairs, seed=seed, progress=say, studies=studies)
    return CircuitPurposes.from_dict(record)
