"""The studied node as a site in the model, the clean runs a study makes (one pass per question set), and the
cache that lets the studies of one analysis share those runs."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from arithlens.analysis.nodes import Node
from arithlens.arith.questions import QuestionBatch
from arithlens.interventions import Engine, Intervention, Outcome
from arithlens.model.hooks import act_name, node_output, node_site, node_slice


@dataclass(frozen=True)
class Site:
    """A head or whole MLP layer as a place in the model (`model.hooks.node_site`), with the study's edits."""

    node: Node

    @property
    def hook(self) -> str:
        return node_site(self.node).hook

    @property
    def head(self) -> int | None:
        return node_site(self.node).head

    def take(self, acts: torch.Tensor, positions) -> torch.Tensor:
        """Full activation (batch, pos, ...) -> the node's (batch, d_site)."""
        return node_slice(self.node, acts, positions)

    def output(self, model, acts: np.ndarray) -> np.ndarray:
        """(batch, d_site) -> the node's write to the residual stream (batch, d_model), bias excluded."""
        return node_output(model, self.node, acts)

    def replace(self, value: np.ndarray | torch.Tensor, kind: str) -> Intervention:
        """Set the node to `value` ((1 or batch, d_site)) at its position."""
        v = torch.as_tensor(value, dtype=torch.float32)[:, None]  # (batch, 1, d_site)
        return Intervention(self.hook, (self.node.position,), self.head, None, kind, v)


def capture(model, site: Site, questions: QuestionBatch, *, engine: bool, pattern: bool = False,
             cache: StudyCache | None = None):
    """One clean forward pass: the node's activation (batch, d_site) float64, optionally the head's attention
    row (batch, pos+1), and an `Engine` on these questions when asked (the pass is the engine's own).

    With an engine the pass records the whole hooked activations, so with a `cache` the heads of one layer share
    it; without one it keeps the node's position only and stops there (the heads of one layer at one position share
    it). The key is the questions, the hooks (which decide the forward's arithmetic) and what is kept, so a hit is
    exactly a re-run."""
    pattern_name = act_name("pattern", site.node.layer)
    names = (site.hook,) + ((pattern_name,) if pattern else ())

    p = site.node.position

    def run():
        got: dict[str, tuple[torch.Tensor, list[int]]] = {}

        def grab(x, hook):
            if engine:
                got[hook.name] = (x.detach().clone(), list(hook.positions))
            else:  # only the node's query position is kept (a cached capture is ~1/22 of the whole activation)
                i = list(hook.positions).index(p)
                row = x[:, :, i : i + 1] if hook.name == pattern_name else x[:, i : i + 1]  # pattern: (B, H, Q, K)
                got[hook.name] = (row.detach().clone(), [p])
            if not engine and len(got) == len(names):
                raise _Captured  # the layers above the node's change none of it: not run

        with model.hooks([(name, grab) for name in names]), torch.inference_mode():
            if engine:
                return got, Engine(model, questions)
            try:
                model(questions.torch_tokens(str(model.device)), logit_positions=[0])
            except _Captured:
                pass
        return got, None

    key = ("capture", names, engine, None if engine else p, question_key(questions))
    got, eng = run() if cache is None else cache.get(key, run)
    x, positions = got[site.hook]
    act = site.take(x, positions).double().cpu().numpy()
    patt = None
    if pattern:
        x, positions = got[pattern_name]
        patt = x[:, site.head, positions.index(p), : p + 1].double().cpu().numpy()
    return act, patt, eng


class _Captured(Exception):
    """Raised by `capture`'s hook once it holds every activation it asked for: the rest of the forward is skipped."""


def question_key(questions: QuestionBatch) -> tuple:
    """The questions themselves, as a cache key."""
    rows = np.concatenate([questions.a, questions.op.astype(np.int64), questions.b])
    return questions.n_digits, len(questions), hashlib.sha256(rows.tobytes()).hexdigest()


class StudyCache:
    """Clean runs (activations, engines, stores) that the studies of one analysis share: heads of one layer
    studied at one digit run the same questions with the same hooks. A run is kept under its questions and
    hooks, so a hit gives exactly what running again would; beyond `max_bytes` the least recently used go."""

    def __init__(self, max_bytes: int = 2**30):
        self.max_bytes = max_bytes
        self._runs: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple, make: Callable[[], object]):
        if key in self._runs:
            self._runs.move_to_end(key)
            self.hits += 1
            return self._runs[key][0]
        self.misses += 1
        return self.put(key, make())

    def clear(self) -> None:
        self._runs.clear()

    def discard(self, keep: Callable[[tuple], bool]) -> None:
        """Drop every run whose key `keep` rejects."""
        for key in [k for k in self._runs if not keep(k)]:
            del self._runs[key]

    def copy(self, also: StudyCache | None = None) -> StudyCache:
        """A cache of the same size holding the same runs, and `also`'s (shared, not copied: a run is never changed
        once kept)."""
        out = StudyCache(self.max_bytes)
        out._runs = OrderedDict(self._runs)
        if also is not None:
            out._runs.update(also._runs)
        return out

    def find(self, key: tuple):
        """The value kept under `key`, or None (a miss)."""
        if key not in self._runs:
            return None
        self.hits += 1
        self._runs.move_to_end(key)
        return self._runs[key][0]

    def put(self, key: tuple, value):
        """Keep `value` under `key` (results one study computes for another, e.g. a companion's outcomes)."""
        self._runs[key] = (value, _nbytes(value))
        while len(self._runs) > 1 and sum(size for _, size in self._runs.values()) > self.max_bytes:
            self._runs.popitem(last=False)
        return value


def array_key(*arrays: np.ndarray) -> str:
    """A digest of arrays' bytes (and shapes), for cache keys on values such as replacement activations."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(str((a.shape, a.dtype.str)).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _nbytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, Engine):
        return value.nbytes
    if isinstance(value, Outcome):
        return value.loss.nbytes + value.wrong.nbytes
    return 0

