"""A node study as values: attention, necessity, sufficiency, representation, the grid and the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from arithlens.errors import ArithLensError
from arithlens.results._base import _build, _check_int, _from_dict, _hidden, _JsonResult


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
        from arithlens.report.result_views import study_pca_plot

        return study_pca_plot(self, interactive=interactive)

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
        from arithlens.report.result_views import study_html

        return study_html(self)


# ---------------------------------------------------------------------------------------------------
# PCA of a node's output on given questions
