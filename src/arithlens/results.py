"""Typed, frozen results of the public API: each reads the JSON the CLI writes and writes it back unchanged.

Every result keeps the JSON object it was built from (`data`), so `to_json()` is byte-for-byte what the CLI
writes and fields the typed view does not name (added by a later version) survive a round trip. The typed
fields are views of that object for code and notebooks; `_repr_html_` is the notebook view and `plot_*`
return matplotlib figures (plotly ones with `interactive=True`) without writing any file.
"""

from __future__ import annotations

import dataclasses
import html
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from arithlens.errors import ArithLensError

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------
# Building typed views from JSON objects


def _convert(hint: Any, value: Any) -> Any:
    """A JSON value as the type `hint` names: dataclasses field by field, tuples for lists, dicts for maps."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value)
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_convert(item, v) for v in value)
    if origin in (dict, Mapping):
        _, item = typing.get_args(hint) or (str, Any)
        return {k: _convert(item, v) for k, v in value.items()}
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def _from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """`cls` (a dataclass) from a JSON object: a field reads the key of its name (absent keys keep the
    field's default); a custom `from_dict` classmethod takes over where a class defines one."""
    custom = cls.__dict__.get("from_dict")
    if custom is not None:
        return custom.__get__(None, cls)(data)
    return _build(cls, data)


def _build(cls: type[T], data: Mapping[str, Any]) -> T:
    """The generic field-by-field construction; a value of the wrong JSON shape is a one-line error naming it."""
    if not isinstance(data, Mapping):
        raise ArithLensError(f"{cls.__name__}: expected a JSON object, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name == "data":
            kwargs["data"] = dict(data)
        elif f.name in data:
            try:
                kwargs[f.name] = _convert(hints[f.name], data[f.name])
            except ArithLensError:
                raise
            except (TypeError, AttributeError, ValueError) as exc:
                raise ArithLensError(f"{cls.__name__}: field '{f.name}' has the wrong shape "
                                     f"({type(exc).__name__}: {exc})") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ArithLensError(f"{cls.__name__}: the JSON object lacks a field ({exc})") from None


def _check_int(owner: str, data: Mapping, key: str, *, optional: bool = False) -> None:
    value = data.get(key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArithLensError(f"{owner}: '{key}' must be an integer >= 0, not {value!r}")


def _check_study(data: Any) -> None:
    """A study's identity fields, before anything is built from them: the node name parses (and exists in the
    model the study names), and position, layer, kind and head are integers that agree with it."""
    from arithlens.analysis.nodes import Node
    from arithlens.model.spec import ModelSpec

    if not isinstance(data, Mapping):
        raise ArithLensError(f"NodeStudy: expected a JSON object, not {type(data).__name__}")
    for key in ("node", "model", "kind", "position", "layer"):
        if key not in data:
            raise ArithLensError(f"NodeStudy: the JSON object lacks '{key}' (is it a <node>_study.json file?)")
    if not isinstance(data["model"], str):
        raise ArithLensError(f"NodeStudy: 'model' must be a model name, not {data['model']!r}")
    try:
        spec = ModelSpec.parse(data["model"])
    except ArithLensError:
        spec = None  # a converted model's name outside the grammar: the node is checked on its own
    node = Node.parse(data["node"]) if spec is None else Node.for_model(data["node"], spec)
    for key in ("position", "layer"):
        _check_int("NodeStudy", data, key)
    _check_int("NodeStudy", data, "head", optional=True)
    kind = "head" if node.is_head else "mlp"
    said = {"position": data["position"], "layer": data["layer"], "kind": data["kind"], "head": data.get("head")}
    true = {"position": node.position, "layer": node.layer, "kind": kind, "head": node.num if node.is_head else None}
    for key, value in said.items():
        if value != true[key]:
            raise ArithLensError(f"NodeStudy: '{key}' is {value!r} but the node {node.name} says {true[key]!r}")


def _read_json(source: str | Path | Mapping) -> Any:
    """A JSON object from a JSON string, a path to a file, or an already-parsed object."""
    if isinstance(source, Mapping) or isinstance(source, list):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith(("{", "["))):
        path = Path(source)
        if not path.is_file():
            raise ArithLensError(f"no JSON file at {path}")
        source = path.read_text()
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise ArithLensError(f"not valid JSON: {exc}") from None


class _JsonResult:
    """`to_json` / `from_json` over the kept JSON object `data`."""

    data: dict

    def to_dict(self) -> dict:
        return self.data

    def to_json(self) -> str:
        """The JSON text, as the CLI writes it (indented, strict: no NaN)."""
        return json.dumps(self.data, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping):
        """From a parsed JSON object."""
        return _from_dict(cls, data)

    @classmethod
    def from_json(cls, source: str | Path | Mapping):
        """From JSON text, a path to a JSON file the CLI wrote, or a parsed object."""
        return _from_dict(cls, _read_json(source))

    def save(self, path: str | Path) -> Path:
        """Write `to_json()` to `path`, atomically."""
        from arithlens.io import write_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.to_json().encode())
        return path


def _hidden() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


# ---------------------------------------------------------------------------------------------------
# Small shared pieces


@dataclass(frozen=True)
class Rate:
    """k successes of n, the rate and its Wilson 95% interval (None when n is 0)."""

    k: int
    n: int
    rate: float | None = None
    ci: tuple[float, ...] | None = None

    def __str__(self) -> str:
        if self.rate is None:
            return f"n/a (n={self.n})"
        low, high = self.ci or (float("nan"), float("nan"))
        return f"{100 * self.rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}] (n={self.n})"


@dataclass(frozen=True)
class Probe:
    """Cross-validated logistic probe accuracy with its label-shuffle null."""

    accuracy: float | None
    p_value: float | None = None
    null_mean: float | None = None
    null_q99: float | None = None
    permutations: int = 0
    n: int = 0
    positives: int = 0
    fold_accuracies: tuple[float, ...] = ()
    note: str = ""


# ---------------------------------------------------------------------------------------------------
# The node study


@dataclass(frozen=True)
class AttentionPeak:
    position: int
    meaning: str
    weight: float


@dataclass(frozen=True)
class Attention:
    """Mean attention from the node's position to each earlier position (per qtype and overall)."""

    positions: tuple[int, ...]
    meanings: tuple[str, ...]
    per_qtype: dict[str, tuple[float, ...]]
    mean: tuple[float, ...]
    top: tuple[AttentionPeak, ...]
    digit_pair_mass: tuple[float, ...]  # index j: attention to Dj plus D'j
    operator: float


@dataclass(frozen=True)
class AblationRates:
    """Under one replacement of the node: question failures, wrong A(t+1) tokens, wrong rate per answer token."""

    fail: Rate
    target_wrong: Rate
    wrong_by_answer: tuple[float | None, ...]


@dataclass(frozen=True)
class NecessityRow:
    """A set of questions (a qtype x T class x carry group, or a qtype's questions) and its rates per ablation
    (`clean`, `mean`, `resample`, `same_class_mean`, `other_class_mean`)."""

    n: int
    rates: dict[str, AblationRates]
    qtype: str | None = None
    case: str | None = None  # "T8", "T9", "T10"
    carry_out: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping) -> NecessityRow:
        rates = {k: _from_dict(AblationRates, v) for k, v in data.items() if isinstance(v, Mapping) and "fail" in v}
        return cls(int(data["n"]), rates, data.get("qtype"), data.get("case"), data.get("carry_out"))


@dataclass(frozen=True)
class Necessity:
    answer_names: tuple[str, ...]  # "A7" .. "A0"
    target_digit: str  # the answer token a carry/borrow out of the study digit changes
    ablations: tuple[str, ...]
    groups: tuple[NecessityRow, ...]
    per_qtype: dict[str, dict[str, NecessityRow]]  # qtype -> "all" / "carry" / "no_carry" / "borrow" / ...
    mean_position: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class PatchRates:
    success: Rate
    target_digit: Rate
    unchanged: Rate


@dataclass(frozen=True)
class Sufficiency:
    applicable: bool
    target_digit: int | None = None
    per_qtype: dict[str, PatchRates] = field(default_factory=dict)
    controls: dict[str, dict[str, PatchRates]] = field(default_factory=dict)  # other head -> qtype -> rates
    dropped_pairs: dict[str, int] = field(default_factory=dict)
    rule: str = ""
    reason: str | None = None


@dataclass(frozen=True)
class QTypeRepresentation:
    """The node's output on one qtype's tricase rows: PCA, silhouettes, probes; `scores` are PC0/PC1."""

    n: int
    evr: tuple[float, ...]
    silhouette_class: float | None
    silhouette_carry: float | None
    probe_carry: Probe
    probe_pair: Probe
    pair_rule: str
    carry_ceiling_from_pair: float | None
    scores: tuple[tuple[float, ...], ...] = field(repr=False, default=())
    case: tuple[int, ...] = field(repr=False, default=())
    carry: tuple[int, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class CosineTest:
    cosine: float | None
    p_value: float | None = None
    null_abs_q95: float | None = None
    null_abs_mean: float | None = None
    permutations: int | None = None
    cosine_raw: float | None = None


@dataclass(frozen=True)
class Shared:
    """Shared or separate directions between qtypes (keys like "ADD~SUB")."""

    direction_cosines: dict[str, CosineTest]
    probe_cosines: dict[str, CosineTest]
    probe_transfer: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class Grid:
    """Mean output per digit pair (Dt, D't) per qtype and how much of its variance the pair and qtype explain."""

    digit: int
    evr: tuple[float, ...]
    r2_pair: float | None
    r2_qtype: float | None
    r2_pair_x_qtype: float | None
    qtype_beyond_pair: float | None
    n: int
    projection: dict[str, dict[str, tuple[tuple[float | None, ...], ...]]] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class QTypeVerdict:
    encodes: bool
    necessary: bool
    sufficient: bool
    role: bool
    feature: str


@dataclass(frozen=True)
class Verdict:
    """The decisions (`arithlens.analysis.node_study.verdict`) and their wording (`arithlens.report.node_text`)."""

    polysemantic: bool
    roles: tuple[str, ...]
    shared_direction: bool | None
    operator_blind: bool
    per_qtype: dict[str, QTypeVerdict]
    text: str


@dataclass(frozen=True)
class Candidate:
    digit: int
    role: str  # "carry" (k-1), "base" (k) or "attended"
    attention: float | None
    study: bool


@dataclass(frozen=True)
class NodeStudy(_JsonResult):
    """Is one head (or MLP layer) doing one job or several? Attention, necessity, sufficiency, representation
    and the verdict of `arithlens node`; `data` is the study's JSON object (the CLI's `<node>_study.json`)."""

    node: str
    model: str
    kind: str  # "head" or "mlp"
    position: int
    layer: int
    head: int | None
    position_token: str
    answer_digit: int | None
    study_digit: int
    study_digit_source: str
    qtypes: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    attention: Attention | None
    necessity: Necessity
    sufficiency: Sufficiency
    representation: dict[str, QTypeRepresentation]
    shared: Shared
    grid: Grid
    verdict: Verdict
    tags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    data: dict = _hidden()

    @classmethod
    def from_dict(cls, data: Mapping) -> NodeStudy:
        """From a parsed study object, its identity fields checked first (`_check_study`)."""
        _check_study(data)
        return _build(cls, data)

    def summary(self) -> str:
        """The text `arithlens node` prints."""
        from arithlens.report.node_text import summarise

        return summarise(self.data)

    # ---- figures (matplotlib Figures; nothing is written) ----

    def plot_pca(self, interactive: bool = False):
        """PC0/PC1 of the node's output per qtype, T8/T9/T10 red/green/blue, marker = carry/borrow out."""
        if interactive:
            from arithlens.report.interactive import study_pca_figure

            return study_pca_figure(self.data)
        from arithlens.report.node_figures import pca_figure

        return pca_figure(self.data)

    def plot_attention(self):
        if self.attention is None:
            raise ArithLensError(f"{self.node} is an MLP layer: it has no attention to plot")
        from arithlens.report.node_figures import attention_figure

        return attention_figure(self.data)

    def plot_necessity(self):
        from arithlens.report.node_figures import necessity_figure

        return necessity_figure(self.data)

    def plot_grid(self):
        from arithlens.report.node_figures import grid_figure

        return grid_figure(self.data)

    # ---- notebook view ----

    def _repr_html_(self) -> str:
        nec = self.necessity.per_qtype
        rows = []
        for op in self.qtypes:
            rep, v = self.representation[op], self.verdict.per_qtype[op]
            resample = nec[op]["all"].rates.get("resample")
            patch = self.sufficiency.per_qtype.get(op)
            rows.append([op, _pct(rep.probe_carry.accuracy), _pct(rep.probe_pair.accuracy),
                         _pct(resample.target_wrong.rate if resample else None),
                         _pct(patch.success.rate if patch else None),
                         " ".join(w for w, flag in (("encodes", v.encodes), ("necessary", v.necessary),
                                                    ("sufficient", v.sufficient), ("ROLE", v.role)) if flag) or "-"])
        head = (f"{self.node} of {self.model}: {self.kind} at P{self.position} ({self.position_token}), "
                f"study digit {self.study_digit} ({self.study_digit_source})")
        table = _html_table(["qtype", f"{self.necessity.target_digit}: carry probe", "pair probe",
                             f"resample: {self.necessity.target_digit} wrong", "patch success", "decision"], rows)
        grid = (f"pair (D{self.study_digit}, D'{self.study_digit}) explains {_pct(self.grid.r2_pair)} of the "
                f"output variance; the qtype adds {_pct(self.grid.qtype_beyond_pair)}")
        return (f"<div><b>{html.escape(head)}</b><p><b>verdict:</b> {html.escape(self.verdict.text)}</p>"
                f"{table}<p>{html.escape(grid)}; tags: {html.escape(' '.join(self.tags) or '(none)')}</p></div>")


# ---------------------------------------------------------------------------------------------------
# PCA of a node's output on given questions


@dataclass(frozen=True)
class NodePCA(_JsonResult):
    """PCA of a node's output (its write to the residual stream) on a question batch, row by row labelled."""

    node: str
    model: str
    evr: tuple[float, ...]
    scores: tuple[tuple[float, ...], ...] = field(repr=False)  # (rows, components)
    question: tuple[str, ...] = field(repr=False)
    answer: tuple[str, ...] = field(repr=False)
    qtype: tuple[str, ...] = field(repr=False)
    case: tuple[int | None, ...] = field(repr=False)  # tricase class 8/9/10 when the batch has one
    carry: tuple[int | None, ...] = field(repr=False)  # real carry/borrow out of the tricase digit
    digit: int | None = None  # the tricase digit, when the batch has one
    data: dict = _hidden()

    @property
    def n(self) -> int:
        return len(self.question)

    def array(self) -> np.ndarray:
        return np.asarray(self.scores, dtype=float).reshape(self.n, -1)

    def plot(self, interactive: bool = False, title: str | None = None):
        """PC0 vs PC1: T8/T9/T10 red/green/blue (grey without a class), triangles where a carry/borrow leaves
        the digit. With `interactive` a plotly figure whose hover shows question, answer, class and carry."""
        if interactive:
            from arithlens.report.interactive import pca_scatter

            return pca_scatter(self, title=title)
        from arithlens.report.node_figures import CASE_COLOURS
        from arithlens.report.figures import new_figure

        x = self.array()
        fig = new_figure(5.0, 4.2, layout="constrained")
        ax = fig.subplots()
        case = np.array([c if c is not None else 0 for c in self.case])
        carry = np.array([c if c is not None else 0 for c in self.carry])
        for c in (0, 8, 9, 10):
            for flag, marker in ((0, "o"), (1, "^")):
                rows = (case == c) & (carry == flag)
                if rows.any():
                    ax.scatter(x[rows, 0], x[rows, 1], s=14, marker=marker, c=CASE_COLOURS.get(c, "grey"),
                               alpha=0.55, linewidths=0, label=(f"T{c}" if c else "no class")
                               + (" carry/borrow out" if flag else ""))
        ax.set_xlabel(f"PC0 ({_pct(self.evr[0])})")
        ax.set_ylabel(f"PC1 ({_pct(self.evr[1]) if len(self.evr) > 1 else 'n/a'})")
        ax.legend(fontsize=7)
        ax.set_title(title or f"{self.node} of {self.model}: {self.n} questions", fontsize=9)
        return fig

    def _repr_html_(self) -> str:
        counts = {}
        for q, c in zip(self.qtype, self.case):
            key = (q, f"T{c}" if c is not None else "-")
            counts[key] = counts.get(key, 0) + 1
        rows = [[q, c, str(n)] for (q, c), n in sorted(counts.items())]
        evr = ", ".join(_pct(v) for v in self.evr)
        return (f"<div><b>PCA of {html.escape(self.node)}</b> ({html.escape(self.model)}), {self.n} questions; "
                f"explained variance {evr}{_html_table(['qtype', 'class', 'rows'], rows)}</div>")


# ---------------------------------------------------------------------------------------------------
# Useful nodes, searches, the whole analysis


@dataclass(frozen=True)
class NodeTags:
    name: str
    tags: tuple[str, ...]


def _node_list(nodes: tuple[NodeTags, ...]):
    from arithlens.analysis.nodes import Node, NodeList, Tag, UsefulNode

    return NodeList(UsefulNode(Node.parse(n.name), [Tag.parse(t) for t in n.tags]) for n in nodes)


class _Maps:
    """Quanta maps of a result's tagged nodes."""

    nodes: tuple[NodeTags, ...]
    model: str

    def node_list(self):
        """The tagged nodes as an `arithlens.analysis.nodes.NodeList` (what the map and search code takes)."""
        return _node_list(self.nodes)

    def plot_map(self, name: str = "MathsPurposePerNode", interactive: bool = False, n_digits: int | None = None):
        """One quanta map by its short name (`map_names()`), e.g. `FailureFrequency`, `AttentionBehavior`,
        `MathsPurposePerNode`; with `interactive` a plotly figure whose hover shows each node's tags."""
        from arithlens.arith.layout import Layout

        layout = Layout(n_digits or _digits_of(self.model))
        if interactive:
            from arithlens.report.interactive import quanta_map

            return quanta_map(self.node_list(), name, layout, title=f"{self.model}: {name}")
        from arithlens.report.quanta_maps import map_figure

        return map_figure(self.node_list(), name, layout)

    @staticmethod
    def map_names() -> list[str]:
        from arithlens.arith.layout import Layout
        from arithlens.report.quanta_maps import catalogue

        return list(catalogue(Layout(6)))


def _digits_of(model: str) -> int:
    from arithlens.model.spec import ModelSpec

    try:
        return ModelSpec.parse(model).n_digits
    except Exception:  # a model name outside the grammar (a converted file): the default layout
        return 6


def _check_useful(data: Any) -> None:
    """A useful-nodes object: a model name and a list of {name, tags} whose names and tags parse."""
    from arithlens.analysis.nodes import Node, Tag

    if not isinstance(data, Mapping):
        raise ArithLensError(f"UsefulNodes: expected a JSON object or a behaviour list, not {type(data).__name__}")
    if not isinstance(data.get("nodes"), list) or not isinstance(data.get("model", ""), str):
        raise ArithLensError("UsefulNodes: the JSON object needs a 'model' name and a 'nodes' list of {name, tags} "
                             "(is it the output of `arithlens useful`?)")
    for entry in data["nodes"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("tags", []), list):
            raise ArithLensError(f"UsefulNodes: a node entry must be {{name, tags}}, not {entry!r}")
        Node.parse(entry.get("name"))
        for tag in entry.get("tags", []):
            if not isinstance(tag, str):
                raise ArithLensError(f"UsefulNodes: tag {tag!r} of {entry['name']} is not a string")
            Tag.parse(tag)


@dataclass(frozen=True)
class UsefulNodes(_JsonResult, _Maps):
    """Useful positions and nodes by mean ablation, each node with its tags (`arithlens useful`).

    `from_json` reads the `--json` object or the `<model>_behavior.json` file (nodes and tags only)."""

    model: str
    nodes: tuple[NodeTags, ...]
    questions: int = 0
    dropped: tuple[str, ...] = ()
    clean_loss: float | None = None
    useful_positions: tuple[int, ...] = ()
    position_failures: tuple[int, ...] = ()
    reference_compat: bool = False
    data: dict = _hidden()

    @classmethod
    def from_dict(cls, data) -> UsefulNodes:
        if isinstance(data, list):  # the behaviour file: records of (position, layer, is_head, num, tags)
            from arithlens.analysis.nodes import NodeList

            listed = NodeList.from_records(data)
            data = {"model": "", "nodes": [{"name": un.name, "tags": [str(t) for t in un.tags]} for un in listed]}
        _check_useful(data)
        data = {k: v for k, v in data.items() if k not in ("files", "note", "seconds")}
        hints = typing.get_type_hints(cls)
        kwargs = {f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls)
                  if f.name != "data" and f.name in data}
        return cls(**kwargs, data=data)

    def behavior_json(self) -> str:
        """The `<model>_behavior.json` text (the predecessor's schema) of these nodes."""
        return json.dumps(self.node_list().to_records(), indent=1) + "\n"

    def _repr_html_(self) -> str:
        heads = sum(1 for n in self.nodes if "H" in n.name.split("L", 1)[1])
        rows = [[n.name, " ".join(n.tags)] for n in self.nodes[:12]]
        more = f"<p>... and {len(self.nodes) - 12} more</p>" if len(self.nodes) > 12 else ""
        return (f"<div><b>{html.escape(self.model)}</b>: {len(self.nodes)} useful nodes ({heads} heads), useful "
                f"positions {', '.join(f'P{p}' for p in self.useful_positions)}; {self.questions} questions"
                f"{_html_table(['node', 'tags'], rows)}{more}</div>")


@dataclass(frozen=True)
class SearchTrial:
    node: str
    task: str
    digit: int
    tag: str
    strong: Rate
    weak: Rate
    tagged: str | None = None


@dataclass(frozen=True)
class SearchReport(_JsonResult, _Maps):
    """Sub-task searches (`arithlens search`): Algo tags backed by patching success rates.

    `from_json` reads `<model>_search.json`; `nodes` (every tag, for the maps) is empty then."""

    rule: str
    coverage: dict[str, Any]
    tags: dict[str, tuple[str, ...]]
    trials: tuple[SearchTrial, ...] = field(repr=False, default=())
    model: str = ""
    nodes: tuple[NodeTags, ...] = field(repr=False, default=())
    data: dict = _hidden()

    def node_list(self):
        """Every node's tags; read from a `<model>_search.json` (which keeps the Algo tags only), those."""
        if self.nodes:
            return _node_list(self.nodes)
        return _node_list(tuple(NodeTags(name, tuple(f"Algo:{v}" for v in values))
                                for name, values in self.tags.items()))

    def _repr_html_(self) -> str:
        rows = [[name, " ".join(tags)] for name, tags in list(self.tags.items())[:20]]
        heads, mlps = self.coverage.get("heads", {}), self.coverage.get("mlps", {})
        return (f"<div><b>search</b> {html.escape(self.model)}: {html.escape(self.rule)}<br>useful heads with a purpose "
                f"{heads.get('purposed')} of {heads.get('useful')}, MLP layers {mlps.get('purposed')} of "
                f"{mlps.get('useful')}{_html_table(['node', 'Algo tags'], rows)}</div>")


@dataclass(frozen=True)
class AnalysisReport(_JsonResult):
    """`arithlens analyze` as values: useful nodes, the search, the node studies and the summary numbers.

    `from_json` also reads an `analysis.json` (the summary alone: `useful`, `search` and `studies` stay empty)."""

    model: str
    summary: dict[str, Any]
    useful: UsefulNodes | None = None
    search: SearchReport | None = None
    studies: tuple[NodeStudy, ...] = ()
    data: dict = _hidden()

    @classmethod
    def from_dict(cls, data: Mapping) -> AnalysisReport:
        if "summary" not in data:  # an analysis.json
            return cls(data["model"], dict(data), data=dict(data))
        return cls(data["model"], data["summary"],
                   UsefulNodes.from_dict(data["useful"]) if data.get("useful") else None,
                   _from_dict(SearchReport, data["search"]) if data.get("search") else None,
                   tuple(_from_dict(NodeStudy, s) for s in data.get("studies", ())), data=dict(data))

    def study(self, node: str) -> NodeStudy:
        for s in self.studies:
            if s.node == node:
                return s
        raise ArithLensError(f"no study of {node!r} here; studied: {', '.join(s.node for s in self.studies)}")

    def _repr_html_(self) -> str:
        rows = [[s["node"], str(s.get("study_digit", "")), "yes" if s.get("polysemantic") else "no",
                 " ".join(s.get("roles", [])) or "-", s.get("verdict", s.get("error", ""))[:160]]
                for s in self.summary.get("studies", [])]
        return (f"<div><b>{html.escape(self.model)}</b>: {self.summary.get('heads')} useful heads, "
                f"{self.summary.get('mlps')} MLP layers"
                f"{_html_table(['node', 'digit', 'polysemantic', 'roles', 'verdict'], rows)}</div>")


# ---------------------------------------------------------------------------------------------------
# HTML helpers


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{100 * x:.1f}%"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


__all__ = [
    "AblationRates", "AnalysisReport", "Attention", "AttentionPeak", "Candidate", "CosineTest", "Grid",
    "Necessity", "NecessityRow", "NodePCA", "NodeStudy", "NodeTags", "PatchRates", "Probe", "QTypeRepresentation",
    "QTypeVerdict", "Rate", "SearchReport", "SearchTrial", "Shared", "Sufficiency", "UsefulNodes", "Verdict",
]


# ---------------------------------------------------------------------------------------------------
# Dictionary features (issue 27): `al.sae` and `al.feature_study`


@dataclass(frozen=True)
class DictionaryQuality:
    """Reconstruction on held-out questions and exact accuracy per qtype (clean / spliced / mean-ablated)."""

    explained_variance: float
    mse: float
    l0: float
    dead: int
    dead_share: float
    dense: int
    dense_share: float
    n: int
    accuracy: dict[str, dict[str, Rate]] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelMatch:
    """The feature that separates a label best: AUROC, Hanley-McNeil interval, permutation p-value."""

    label: str
    feature: int
    auroc: float
    strength: float
    ci: tuple[float, ...]
    p_value: float | None
    fires_on: str
    positives: int
    n: int
    passes: bool


@dataclass(frozen=True)
class FeatureDictionary(_JsonResult):
    """A sparse autoencoder trained on one site (`al.sae`, `arithlens sae`): its quality, every live feature's
    meaning (`features`: firing, histogram, best labels, top questions) and the sweep's Pareto points. The
    trained module rides along as `sae` (not in the JSON); `save_dictionary(dir)` writes it in SAELens's form."""

    site: str
    model: str
    arch: str
    size: int
    d_in: int
    quality: DictionaryQuality
    k: int | None = None
    l1: float | None = None
    sweep: tuple[dict, ...] = ()
    data: dict = _hidden()
    sae: Any = field(default=None, repr=False, compare=False)

    @property
    def features(self) -> list[dict]:
        return self.data.get("features", [])

    def match(self, label: str) -> LabelMatch | None:
        """The best feature for a label (`ADD.SC1`, `SUB.MB1.pair`, `D1=7`, `qtype=NEG`), or None."""
        for rec in self.data.get("meaning", {}).get("labels", []):
            if rec["label"] == label:
                return _from_dict(LabelMatch, rec["best"]) if rec.get("best") else None
        raise ArithLensError(f"no label {label!r}; labels look like ADD.SC1, SUB.MB1.pair, NEG.NT1=8, D1=7")

    def save_dictionary(self, directory: str | Path) -> list[Path]:
        """`cfg.json` + `sae_weights.safetensors` (SAELens's format) into `directory`."""
        if self.sae is None:
            raise ArithLensError("this result was read from JSON: it has no trained weights to save")
        from arithlens.analysis.features.dictionary import save_dictionary

        return save_dictionary(self.sae, directory, hook_name=self.data["hook"], model_name=self.model,
                               extra={"site": self.site, "position": self.data["position"],
                                      "head": self.data["head"]})

    def summary(self) -> str:
        from arithlens.report.features import dictionary_text

        return dictionary_text(self.data)

    def plot_pareto(self):
        from arithlens.report.features import pareto_figure

        return pareto_figure(self.data)

    def plot_feature(self, feature: int, interactive: bool = False):
        """One feature's dashboard: top questions, activation histogram, AUROC of its best labels."""
        from arithlens.report.features import feature_dashboard

        return feature_dashboard(self.data, feature, interactive=interactive)

    def _repr_html_(self) -> str:
        q = self.quality
        rows = [[name, str(q.accuracy.get("clean", {}).get(name)), str(rate)]
                for name, rate in q.accuracy.get("spliced", {}).items()]
        return (f"<div><b>{html.escape(self.arch)} dictionary</b> of {html.escape(self.site)} ({self.size} features): "
                f"explained variance {q.explained_variance:.3f}, L0 {q.l0:.2f}, dead {_pct(q.dead_share)}"
                f"{_html_table(['qtype', 'clean exact', 'spliced exact'], rows)}</div>")


@dataclass(frozen=True)
class FeatureStudy(_JsonResult):
    """The founding question from below for one site (`al.feature_study`): its dictionary, the features that
    carry the carry / borrows / operands at the study digit, whether one serves carry and borrow at once, each
    one's causal effect, and a probe and a difference-of-means direction beside them (`comparison`)."""

    site: str
    model: str
    digit: int
    dictionary: FeatureDictionary
    one_feature_for_carry_and_borrow: bool
    shared_features: tuple[int, ...] = ()
    operand_carriers: tuple[int, ...] = ()
    data: dict = _hidden()

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureStudy:
        features = data["features"]
        return cls(data["site"], data["model"], features["digit"], FeatureDictionary.from_dict(data["dictionary"]),
                   bool(features["one_feature_for_carry_and_borrow"]), tuple(features["shared_features"]),
                   tuple(features["operand_carriers"]), data=dict(data))

    @property
    def features(self) -> dict:
        """The node study's "features" part (what `node_study` should include)."""
        return self.data["features"]

    def summary(self) -> str:
        from arithlens.report.features import study_text

        return study_text(self.data)

    def _repr_html_(self) -> str:
        rows = [[op, str(c.get("feature_encodes")), str(c.get("probe_reads")), str(c.get("feature_moves")),
                 str(c.get("direction_moves"))] for op, c in self.features["comparison"].items()]
        return (f"<div><b>features of {html.escape(self.site)}</b> at digit {self.digit}: one feature for carry and "
                f"borrow: {'yes' if self.one_feature_for_carry_and_borrow else 'no'}"
                f"{_html_table(['qtype', 'feature encodes', 'probe reads', 'feature moves', 'direction moves'], rows)}"
                "</div>")


__all__ += ["DictionaryQuality", "FeatureDictionary", "FeatureStudy", "LabelMatch"]
