"""Purposes on an edge circuit: each head and MLP the circuit holds keeps the Algo tags the analysis gave it; every
other one is removed from the circuit alone (its kept edges cut; what fails, exactly, per qtype and answer digit),
tagged from that removal and searched with the sub-task searches (optionally, heads still without one get a node
study, whose carry/borrow role is a purpose); what still has no purpose is listed with what it is needed for.
Returns the `results.purposes.CircuitPurposes` layout as a dict (the API builds the result)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from arithlens.analysis.edges.discovery import STREAM_EDGE_REFERENCE, EdgeCircuit
from arithlens.analysis.edges.forward import ablation_values, edge_forward
from arithlens.analysis.faithfulness import (
    FAITHFULNESS_SEED, REFERENCE_QUESTIONS, fresh_questions, reference_questions, rng_for, supported_qtypes,
)
from arithlens.analysis.nodes import Major, Node, NodeList, Tag, UsefulNode
from arithlens.analysis.search import engine_runner, search
from arithlens.analysis.useful import attention_tags, behaviour_tags, mean_attention
from arithlens.arith.questions import QuestionBatch
from arithlens.errors import ArithLensError
from arithlens.interventions import Outcome, score
from arithlens.model.transformer import HookedTransformer

# Fresh questions per qtype the removals are judged on: a node failing 3% of a qtype fails at least one of them with
# probability 0.95. Each removal is one edge-masked forward over them (~1.5 s per 100 questions on one thread of the
# default model), so the ~190 nodes of its circuit without a purpose cost minutes, not the hour of 1,000 each.
REMOVAL_QUESTIONS = 100
STREAM_PURPOSE_QUESTIONS, STREAM_PURPOSE_RESAMPLE = 28_005, 28_006

Progress = Callable[[str, int, int], None]  # (stage, done, total)
Study = Callable[[HookedTransformer, Node], dict]  # (model, head) -> a study's JSON object (`NodeStudy.data`)


def default_study(model: HookedTransformer, node: Node, cache=None) -> dict:
    """`study_node` at analyze's STUDY_DEFAULTS (the options its carry-like heads are studied with)."""
    from arithlens.analysis.analyze import STUDY_DEFAULTS
    from arithlens.analysis.node_study import study_node

    return study_node(model, node, STUDY_DEFAULTS, cache=cache).data


def study_record(data: dict | None, error: str = "", seconds: float = 0.0) -> dict:
    """What a circuit node keeps of its study: the verdict's carry/borrow roles, the study's tags (its purpose when
    a role was found), the digit studied, or the one-line error that stopped it."""
    if data is None:
        return {"roles": [], "tags": [], "digit": None, "error": error, "seconds": round(seconds, 3)}
    return {"roles": list(data["verdict"]["roles"]), "tags": list(data["tags"]), "digit": data["study_digit"],
            "error": "", "seconds": round(seconds, 3)}


def study_heads(model: HookedTransformer, heads: list[Node], study: Study | None = None,
                progress: Progress | None = None) -> dict[Node, dict]:
    """`study_record` of each head, studied one after another (sharing clean runs when `study` is the default); a
    study that cannot run on a head (an `ArithLensError`: no digit to study, too few questions) records why."""
    from arithlens.analysis.analyze import STUDY_CACHE_BYTES
    from arithlens.analysis.node_study import StudyCache

    if study is None:
        cache = StudyCache(STUDY_CACHE_BYTES)
        study = lambda m, n: default_study(m, n, cache)  # noqa: E731
    say = progress or (lambda stage, done, total: None)
    out = {}
    for k, node in enumerate(heads):
        say("studies", k, len(heads))
        t0 = time.perf_counter()
        try:
            out[node] = study_record(study(model, node), seconds=time.perf_counter() - t0)
        except ArithLensError as exc:
            out[node] = study_record(None, str(exc), time.perf_counter() - t0)
    say("studies", len(heads), len(heads))
    return out


def circuit_units(circuit: EdgeCircuit) -> list[Node]:
    """The circuit's heads and MLP layers as Nodes, in node order."""
    return sorted(Node.parse(name) for name in circuit.nodes)


def removal_outcomes(model: HookedTransformer, circuit: EdgeCircuit, nodes: list[Node], questions: QuestionBatch,
                     ablated: torch.Tensor) -> tuple[np.ndarray, dict[Node, Outcome]]:
    """(the questions the intact circuit answers exactly, each node's `Outcome` on those with its kept edges
    cut). The outcomes use threshold 0: a question fails when any answer token is
    wrong, the exact criterion faithfulness uses (the loss is positive whenever a token is wrong). A node that
    sends no kept edge is not run: cutting nothing leaves the intact circuit's answers."""
    graph = circuit.graph
    device = model.device
    kept = torch.as_tensor(circuit.kept, dtype=torch.float32, device=device)
    sender = np.array([e.sender.name for e in graph.edges])
    tokens = questions.torch_tokens(str(device))
    answer = model.spec.layout.answer_logit_positions
    targets = tokens[:, answer.start + 1 : answer.stop + 1]
    with torch.no_grad():
        intact = edge_forward(model, graph, tokens, ablated, kept)
        right = (intact.argmax(-1) == targets).all(-1).cpu().numpy()
        rows = torch.as_tensor(np.flatnonzero(right), device=device)
        tokens, targets = tokens[rows], targets[rows]
        ablated = ablated if ablated.shape[0] == 1 else ablated[rows]
        outcomes = {}
        for node in nodes:
            out_of = sender == node.name
            if not (circuit.kept & out_of).any():
                outcomes[node] = Outcome(np.zeros(len(tokens)), np.zeros(tuple(targets.shape), dtype=bool), 0.0)
                continue
            mask = kept * ~torch.as_tensor(out_of, device=device)
            outcomes[node] = score(edge_forward(model, graph, tokens, ablated, mask), targets, threshold=0.0)
    return right, outcomes


def _failed_digits(outcome: Outcome, n_digits: int) -> list[str]:
    """Answer digits wrong in some failing question, sign (A(n+1)) first: answer token j is digit A(n+1-j)."""
    wrong = outcome.wrong[outcome.fails].any(0)
    return [f"A{n_digits + 1 - j}" for j in np.flatnonzero(wrong)]


def circuit_purposes(model: HookedTransformer, circuit: EdgeCircuit, tagged: NodeList | None = None, *,
                     questions: QuestionBatch | None = None, per_qtype: int = REMOVAL_QUESTIONS,
                     reference: QuestionBatch | None = None, pairs: int = 100, seed: int = FAITHFULNESS_SEED,
                     search_seed: int = 0, tasks=None, make_pairs=None, progress: Progress | None = None,
                     studies: bool | Study = False) -> dict:
    """Every head and MLP of `circuit` with its purpose, as `CircuitPurposes.to_dict` lays it out.

    `tagged`: the analysis's nodes with their tags (useful nodes; Algo tags where its search ran). A node with an
    Algo tag there keeps it (source "analysis"; its removal is not run). The others are removed from the circuit
    one at a time on `questions` (default `per_qtype` fresh ones per qtype; only those the intact circuit answers
    exactly are judged), under the circuit's ablation (mean values over `reference`, or one resampled row per question).
    Each is then tagged from its removal (Fail%, Impact, Math: the node's tags inside the circuit; a node whose
    removal fails nothing keeps the analysis's tags), with its attention for heads, and the sub-task searches run
    on them together (`pairs` pairs per sub-task and digit, seed `search_seed`, `tasks` and `make_pairs` as
    `search` takes them; `pairs` 0 skips the search). Nodes that gain an Algo tag get source "search"; the rest
    are unexplained, except that with `studies` (True: `study_node` at analyze's STUDY_DEFAULTS; or a `Study`) each
    head still without a purpose is studied, and a study whose verdict finds a carry/borrow role gives the head
    the study's tags as its purpose (source "study"); MLPs are not studied."""
    if pairs < 0:
        raise ArithLensError(f"pairs must be >= 0, not {pairs}")
    t0 = time.perf_counter()
    say = progress or (lambda stage, done, total: None)
    spec = model.spec
    tagged = tagged if tagged is not None else NodeList()
    if questions is None:
        questions = fresh_questions(spec, per_qtype, rng_for(seed, STREAM_PURPOSE_QUESTIONS))
    if reference is None:
        reference = reference_questions(spec, REFERENCE_QUESTIONS, rng_for(seed, STREAM_EDGE_REFERENCE))
    ref_tokens = reference.torch_tokens(str(model.device))
    if circuit.ablation == "resample":
        ablated = ablation_values(model, ref_tokens, "resample", batch=len(questions),
                                  rng=rng_for(seed, STREAM_PURPOSE_RESAMPLE))
    else:
        ablated = ablation_values(model, ref_tokens, circuit.ablation)

    units = circuit_units(circuit)
    known = {n: tagged.get(n).values(Major.ALGO) if n in tagged else [] for n in units}
    todo = [n for n in units if not known[n]]
    say("removals", 0, len(todo))
    right, outcomes = removal_outcomes(model, circuit, todo, questions, ablated)
    say("removals", len(todo), len(todo))
    graph_senders = np.array([e.sender.name for e in circuit.graph.edges])
    judged_questions = questions.select(right)
    qtypes = [qt for qt in supported_qtypes(spec) if (questions.qtype == qt).any()]
    judged = {qt.name: int((judged_questions.qtype == qt).sum()) for qt in qtypes}

    inside: dict[Node, list[Tag]] = {}  # the tags each node to search carries
    heads = any(n.is_head for n in todo) and len(judged_questions)
    pattern = mean_attention(model, judged_questions) if heads else None
    for node in todo:
        own = [t for t in (tagged.get(node).tags if node in tagged else []) if t.major != Major.ALGO]
        removal = behaviour_tags(outcomes[node], judged_questions)
        tags = removal or [t for t in own if t.major != Major.ATTN]
        attn = [t for t in own if t.major == Major.ATTN]
        if node.is_head and not attn and pattern is not None:
            attn = attention_tags(pattern, node)
        inside[node] = tags + attn
    found: dict[Node, list[str]] = {}
    if todo and pairs:
        candidates = NodeList(UsefulNode(n, list(inside[n])) for n in todo)
        result = search(candidates, spec, engine_runner(model), tasks=tasks, n_pairs=pairs, seed=search_seed,
                        make_pairs=make_pairs, progress=lambda done, total, label: say("search", done, total))
        found = {un.node: un.values(Major.ALGO) for un in result.nodes}

    studied: dict[Node, dict] = {}
    if studies:
        heads_left = [n for n in todo if n.is_head and not found.get(n)]
        studied = study_heads(model, heads_left, None if studies is True else studies, say)
    for node, rec in studied.items():
        if rec["roles"]:
            found[node] = rec["tags"]

    records = []
    for node in units:
        if known[node]:  # explained already: its removal was not run
            purpose, source, fails, digits = known[node], "analysis", {}, []
            tags = [str(t) for t in tagged.get(node).tags if t.major != Major.ALGO]
        else:
            purpose = found.get(node, [])
            source = ("study" if node in studied and studied[node]["roles"] else "search") if purpose else "none"
            fails = {qt.name: int(outcomes[node].fails[judged_questions.qtype == qt].sum()) for qt in qtypes}
            digits, tags = _failed_digits(outcomes[node], spec.n_digits), [str(t) for t in inside[node]]
        records.append({
            "node": node.name, "kind": "head" if node.is_head else "mlp", "useful": node in tagged,
            "source": source, "purpose": list(purpose), "tags": tags,
            "sends": int((circuit.kept & (graph_senders == node.name)).sum()), "fails": fails,
            "judged": judged if fails else {}, "digits": digits, **({"study": studied[node]} if node in studied else {})})
    return {"model": spec.name, "method": circuit.method, "ablation": circuit.ablation, "n_edges": circuit.n_edges,
            "questions": min(int((questions.qtype == qt).sum()) for qt in qtypes), "pairs": pairs if todo else 0,
            "searched": [n.name for n in todo] if pairs else [], "seed": seed, "nodes": records,
            "studied": [n.name for n in studied],
            "seconds": time.perf_counter() - t0}


__all__ = ["REMOVAL_QUESTIONS", "circuit_purposes", "circuit_units", "default_study", "removal_outcomes", "study_heads",
           "study_record"]
