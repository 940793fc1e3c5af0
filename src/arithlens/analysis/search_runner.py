"""Running patched questions for the sub-task search: a runner answers the clean questions of a set of pairs
with chosen nodes patched from the store questions, through the intervention engine (stacked along the batch
axis off the CPU, on worker threads on it)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch

from arithlens.analysis.nodes import Node
from arithlens.analysis.subtasks import Pairs
from arithlens.errors import ArithLensError
from arithlens.interventions import Engine, Intervention, patch_from, record_with_logits
from arithlens.model.hooks import node_site, output_sites


class Runner(Protocol):
    """Answers (batch, n_answer) argmax tokens, sign first, for one set of pairs. A runner may also offer
    `patched_many(node_sets)` (a list of `patched` answers, in order), which the search then uses for
    everything it judges in a cell, and `rows(slice)` (the same runner over a block of the pairs), with which
    the search judges the pairs in stages and stops patching a node set once its verdict is settled."""

    clean_pred: np.ndarray  # the clean questions, unpatched
    store_pred: np.ndarray  # the store questions

    def patched(self, nodes: Sequence[Node]) -> np.ndarray:
        """The clean questions with every node's output replaced by the same row's store output."""
        ...


DEFAULT_BATCH_ROWS = 2048  # stacked rows per forward off the CPU (see EngineRunner)


class EngineRunner:
    """Patches with the intervention engine: one store run, one clean run, then the patched runs.

    `patched_many` can stack node sets along the batch axis, up to `batch_rows` rows per forward: the clean
    questions repeated once per set, each node's stored value applied only to the rows of the sets holding it
    (a row-masked patch; a node of another set downstream is not clamped). Only sets that hook the same sites
    at the same positions share a forward, so each set's rows take the engine's path for that set alone
    (start layer, hooked blocks). Stacking shares the per-call cost (dispatch, kernel launches), not the
    arithmetic per row: on a CPU a 100-pair run is compute-bound and stacking measured no faster
    (`benchmarks/bench_search.py`), so `batch_rows=None` stacks `DEFAULT_BATCH_ROWS` off the CPU only (0: one
    set per forward). On a CPU the forwards run on `workers` threads of one torch thread each instead (default
    `torch.get_num_threads()`; the engine keeps its scratch per thread), as `Engine.outcomes` does.
    """

    def __init__(self, model, pairs: Pairs, *, batch_rows: int | None = None, workers: int | None = None):
        if batch_rows is not None and batch_rows < 0:
            raise ArithLensError(f"batch_rows must be 0 (unbatched) or positive, not {batch_rows}")
        if workers is not None and workers < 1:
            raise ArithLensError(f"workers must be positive, not {workers}")
        names = output_sites(model.spec.n_layers)
        # the store's activations and its own answers from one pass
        self._stored, store_logits = record_with_logits(model, pairs.store, names,
                                                        model.spec.layout.answer_logit_positions)
        self._engine = Engine(model, pairs.clean)
        cpu = self._engine.tokens.device.type == "cpu"
        self.batch_rows = (0 if cpu else DEFAULT_BATCH_ROWS) if batch_rows is None else batch_rows
        self.workers = (torch.get_num_threads() if workers is None else workers) if cpu else 1
        self.clean_pred = self._engine.clean_logits.argmax(-1).cpu().numpy()
        self.store_pred = store_logits.argmax(-1).cpu().numpy()

    def rows(self, rows: slice) -> EngineRunner:
        """This runner over a contiguous block of its pairs (views of its store and clean runs, nothing rerun):
        what the search's sequential test patches a stage at a time."""
        out = copy.copy(self)
        out._engine = self._engine.rows(rows)
        out._stored = {n: t[rows] for n, t in self._stored.items()}
        out.clean_pred, out.store_pred = self.clean_pred[rows], self.store_pred[rows]
        return out

    def _patch(self, node: Node) -> Intervention:
        site = node_site(node)
        return patch_from(self._stored, site.hook, node.position, head=site.head, neuron=site.neuron)

    def patched(self, nodes: Sequence[Node]) -> np.ndarray:
        return self._engine.answer_logits([self._patch(node) for node in nodes]).argmax(-1).cpu().numpy()

    def patched_many(self, node_sets: Sequence[Sequence[Node]]) -> list[np.ndarray]:
        """`patched` of each node set, in order: stacked (`batch_rows`) and on `workers` threads."""
        node_sets = [tuple(dict.fromkeys(nodes)) for nodes in node_sets]
        per_batch = self.batch_rows // max(len(self._engine), 1)
        if per_batch < 2:
            chunks = [[i] for i in range(len(node_sets))]
        else:
            by_sites: dict[tuple, list[int]] = {}
            for i, nodes in enumerate(node_sets):
                by_sites.setdefault(_sites(nodes), []).append(i)
            chunks = []
            for indices in by_sites.values():
                n_chunks = -(-len(indices) // per_batch)
                size = -(-len(indices) // n_chunks)  # chunks of near-equal size
                chunks += [indices[start : start + size] for start in range(0, len(indices), size)]
            largest = max((len(chunk) for chunk in chunks), default=1)
            if largest > 1:
                self._engine.tiled(largest)  # tiled once; smaller chunks use views of it

        def run(chunk: list[int]) -> list[np.ndarray]:
            if len(chunk) == 1:
                return [self.patched(node_sets[chunk[0]])]
            pred = self.stacked_logits([node_sets[i] for i in chunk]).argmax(-1).cpu().numpy()
            n = len(self._engine)
            return [pred[b * n : (b + 1) * n] for b in range(len(chunk))]

        out: list[np.ndarray | None] = [None] * len(node_sets)
        for chunk, preds in zip(chunks, self._map(run, chunks)):
            for i, pred in zip(chunk, preds):
                out[i] = pred
        return out

    def _map(self, fn: Callable, items: list) -> Iterable:
        """`map(fn, items)`, on `workers` threads of one torch thread each when there are several."""
        if self.workers < 2 or len(items) < 2:
            return map(fn, items)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # process-wide while the pool runs: each forward is a few small matmuls
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="arithlens-search") as pool:
                return list(pool.map(fn, items))
        finally:
            torch.set_num_threads(threads)

    def stacked_logits(self, node_sets: Sequence[Sequence[Node]]) -> torch.Tensor:
        """(len(node_sets) * batch, n_answer, vocab): one forward of the clean questions repeated once per set,
        block b patched with set b only. Any sets may share it; `patched_many` gives it only sets with the same
        sites, whose rows then take the path each set takes alone."""
        n, copies = len(self._engine), len(node_sets)
        engine = self._engine.tiled(copies)
        blocks: dict[Node, list[int]] = {}
        for b, nodes in enumerate(node_sets):
            for node in nodes:
                blocks.setdefault(node, []).append(b)
        ivs = []
        for node, holding in blocks.items():
            iv = self._patch(node)
            mask = torch.zeros(copies, dtype=torch.bool)
            mask[holding] = True
            ivs.append(dataclasses.replace(iv, value=iv.value.repeat(copies, *[1] * (iv.value.ndim - 1)),
                                           row_mask=mask.repeat_interleave(n).to(engine.tokens.device)))
        return engine.answer_logits(ivs)


def _sites(nodes: Sequence[Node]) -> tuple:
    """What decides the engine's path for a node set: the hooks it edits, at which positions."""
    return tuple(sorted({(node_site(node).hook, node.position) for node in nodes}))


RunnerFactory = Callable[[Pairs], Runner]


def engine_runner(model, *, batch_rows: int | None = None, workers: int | None = None) -> RunnerFactory:
    return lambda pairs: EngineRunner(model, pairs, batch_rows=batch_rows, workers=workers)
