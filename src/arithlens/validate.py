"""Typed validation at the edge: every numeric CLI option and the train config go through here, once, with
limits that follow from the machine (cores this process may use, memory available now)."""

from __future__ import annotations

import math
import os
from typing import Any, Optional

from arithlens.errors import ArgumentTypeError, ArithLensError, ResourceError

# The share of the available memory a single request may take before it is refused up front.
MEMORY_SHARE = 0.8
# Stated upper bounds of counts that would otherwise run for ever: 100,000 label shuffles give p-values down to
# 1e-5 (the verdict needs 99); 10 million training steps is ~700x the longest shipped recipe (15K).
MAX_PERMUTATIONS = 100_000
MAX_STEPS = 10_000_000


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable), else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 34


def check_int(flag: str, value: Optional[int], *, low: int | None = None, high: int | None = None,
              why: str = "") -> Optional[int]:
    """`value` if it is an integer in [low, high] (None passes: the option was not given); else a one-line error.
    A bool or a float is not a count (`questions(True)` once meant one question)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, _np_integer())):
        raise ArgumentTypeError(f"{flag} must be an integer, not {_shown(value)}")
    value = int(value)
    if low is not None and value < low or high is not None and value > high:
        if low is not None and high is not None:
            bound = f"between {low} and {high}"
        else:
            bound = f"at least {low}" if low is not None else f"at most {high}"
        raise ArithLensError(f"{flag} must be {bound}{why}, not {value}")
    return value


def _np_integer() -> type:
    import numpy as np

    return np.integer


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else repr(value)


def check_count(flag: str, value: Any, *, low: int = 0, high: int | None = None) -> int:
    """A required count: an integer in [low, high]."""
    if value is None:
        raise ArgumentTypeError(f"{flag} must be an integer, not None")
    return check_int(flag, value, low=low, high=high)  # type: ignore[return-value]


def check_choice(flag: str, value: Any, choices: tuple[str, ...]) -> str:
    """`value` if it is one of `choices` (strings, compared exactly)."""
    if not isinstance(value, str) or value not in choices:
        raise ArithLensError(f"{flag} must be one of {', '.join(choices)}, not {value!r}")
    return value


def check_range(flag: str, value: Optional[float], low: float, high: float) -> Optional[float]:
    """A finite number in [low, high] (None passes)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ArithLensError(f"{flag} must be a number from {low:g} to {high:g}, not {value!r}")
    return value


def check_weights(flag: str, weights: Any, known: tuple[str, ...]) -> dict[str, float]:
    """A mapping of known names to finite, non-negative weights, not all zero (`qtypes={"add": 1, "neg": 2}`)."""
    from collections.abc import Mapping

    if not isinstance(weights, Mapping) or not weights:
        raise ArgumentTypeError(f"{flag} must be a non-empty mapping of {', '.join(known)} to weights, "
                                f"not {_shown(weights)}")
    out = {}
    for name, w in weights.items():
        key = name.lower() if isinstance(name, str) else name
        if key not in known:
            raise ArithLensError(f"{flag}: unknown name {name!r} (known: {', '.join(known)})")
        if isinstance(w, bool) or not isinstance(w, (int, float, _np_integer())) or not math.isfinite(float(w)) \
                or w < 0:
            raise ArithLensError(f"{flag}: the weight of {name!r} must be a finite number >= 0, not {w!r}")
        out[key] = float(w)
    if not sum(out.values()) > 0:
        raise ArithLensError(f"{flag}: the weights are all zero: give at least one above 0")
    return out


def read_json_object(path: Any, what: str) -> dict:
    """The JSON object in the file `path`; one-line errors naming `what` (e.g. "config") for an unreadable file,
    bad JSON or another JSON type."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ArithLensError(f"cannot read {what} '{path}': {exc}") from None
    if not isinstance(data, dict):
        raise ArithLensError(f"{what} '{path}' must hold a JSON object")
    return data


def check_finite_json(data: Any, where: str) -> Any:
    """`data` (parsed JSON) if it holds no NaN or infinity anywhere; else a one-line error naming the field.
    Python's json reads `NaN` and `Infinity`, which are not JSON and no option accepts."""
    def walk(value: Any, path: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise ArithLensError(f"{where}: '{path or 'value'}' is {value}, not a finite number")
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(data, "")
    return data


def check_threads(value: Optional[int], flag: str = "--threads") -> Optional[int]:
    """Threads from 1 to the cores this process may use."""
    cores = usable_cores()
    return check_int(flag, value, low=1, high=cores, why=f" (this machine lets this process use {cores} cores)")


def check_seed(value: Optional[int], flag: str = "--seed") -> Optional[int]:
    """Seeds are integers >= 0 (numpy refuses negative ones)."""
    return check_int(flag, value, low=0)


def check_memory(flag: str, value: int, bytes_each: float, what: str) -> int:
    """Refuse `value` items of about `bytes_each` bytes when they cannot fit in the memory available now."""
    need = value * bytes_each
    have = available_memory()
    if need > MEMORY_SHARE * have:
        most = max(1, int(MEMORY_SHARE * have // max(bytes_each, 1)))
        raise ResourceError(f"{flag} {value:,} needs about {_gb(need)} of memory for {what}, more than the "
                            f"{_gb(have)} available: ask for at most about {most:,}")
    return value


def check_chunked_memory(flag: str, value: int, items_each: int, chunk: int, bytes_each: float, what: str) -> int:
    """Like `check_memory` for work done `chunk` items at a time: `value` asks for `value * items_each` items,
    but only one chunk of them is in memory at once, so only a chunk that cannot fit is refused."""
    items = min(value * items_each, chunk)
    need = items * bytes_each
    have = available_memory()
    if need > MEMORY_SHARE * have:
        raise ResourceError(f"{flag} {value:,}: one pass over {items:,} questions needs about {_gb(need)} of memory "
                            f"for {what}, more than the {_gb(have)} available")
    return value


def _gb(n: float) -> str:
    if n >= 1e11:
        return f"{n / 1e9:,.0f} GB"
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def forward_bytes(spec: Any) -> int:
    """Rough bytes one question takes in a forward pass with activations kept (float32): the residual stream
    and the hook points of every layer, attention patterns, MLP activations and the logits, doubled for the
    copies an ablation sweep keeps (clean and patched)."""
    ctx, layers = spec.n_ctx, spec.n_layers
    per_layer = ctx * (6 * spec.d_model + 4 * spec.n_heads * spec.d_head + 2 * spec.d_mlp + 2 * spec.n_heads * ctx)
    return 2 * 4 * (layers * per_layer + ctx * (2 * spec.d_model + spec.d_vocab))


# ---------------------------------------------------------------------------------------------------
# Each command's peak memory (summed over its processes, PSS), estimated before it starts. The terms were
# calibrated against measured peaks by benchmarks/bench_memory.py (benchmarks/results/memory.md) on the default
# model; the per-question terms are in units of `forward_bytes`, so they grow with the model.

PROCESS_BYTES = 380e6  # python, torch, numpy and a small model, before any work
QTYPES = 3  # ADD, SUB, NEG: the commands' per-qtype counts are multiplied by this
# One figure-drawing process of `analyze` (forked; matplotlib, no torch work): what it adds to the tree's PSS sum is
# its own pages, 55-57 MB each (`python benchmarks/bench_figure_workers.py DIR`: 32 study figures on 2 workers, peak
# USS 55 and 56 MB, the tree's PSS 228 -> 342 MB)
FIGURE_WORKER_BYTES = 60e6
# Working set per question, in forward_bytes, of each stage (fit slopes of the calibration runs):
USEFUL_EACH = 0.55  # the useful sweep keeps clean and per-layer activations of one chunk of its questions
# Past one chunk (the power stage's 1,794 questions at the defaults), the next chunk's engine is built while the last
# one's is still held: `useful` at its defaults peaked at 893 MB, 124 MB over the one-chunk estimate (769 MB; the
# one-chunk cases stayed within 3%), so per question of a chunk, in forward_bytes:
USEFUL_NEXT_EACH = 0.25
SEARCH_EACH = 0.5  # the searches keep the store and clean runs of one sub-task's pairs
# The node study runs its necessity questions one chunk (`node_study.necessity.CHUNK`) of one qtype's set at a time:
STUDY_CHUNK_EACH = 0.2  # per question of that chunk (its engine: the clean run's caches, their scratch copy, a rerun)
STUDY_HELD_EACH = 0.002  # per necessity question of the whole study (3 qtypes x 3 T classes per --questions): its
# labels, the node's activation and output, its outcomes
STUDY_PAIR_EACH = 0.135  # its patching pairs and mixed set (per qtype and pair)
FAITHFULNESS_EACH = 0.25  # a chunk of the faithfulness check (the masks' scores, per question of the chunk)
# `faithfulness --nodes useful` peaked at 1,688 MB at its defaults, 1.5x the sum of its two stages' terms, while the
# allocator kept the sweep's freed pages for the check; with them handed back first (`release_freed_memory`) it
# peaked at 1,034 MB, just under the plain sum (1,116 MB; benchmarks/results/memory_h33.json). Since the check runs
# fewer positions, its peak is the sweep's (benchmarks/bench_faithfulness_memory.py --power 598: the sweep 989-1,020 MB
# RSS, the check after it 666-869 MB): 979-1,062 MB over three runs at the defaults, the sum (1,290 MB) 1.21x over it;
# kept as the sum, which also covers the run-to-run spread (--questions 3000: 894 to 1,205 MB in six runs).
USEFUL_THEN_CHECK = 1.0
# The circuit search's cached run of its search questions and one rerun kept for `Pruner.accept`, per search question.
# With the useful sweep's freed pages handed back first and the means computed in chunks, `circuit` at its defaults
# peaked at 1,321 MB (was 1,804 at 0.83); 0.45 puts its estimate 1.12x over that (benchmarks/results/memory.md)
CIRCUIT_SEARCH_EACH = 0.45
# The edge circuit's peak is its attribution pass (a gradient through the edge-masked forward, 64 questions at a
# time); per question of that chunk, in forward_bytes (benchmarks/bench_edges.py: the stage's peak RSS over the
# process's before it, on the default model)
EDGES_EACH = 5.0  # 435 MB over 312 MB before it (64 x 1.36 MB forward_bytes x 5.0)
EDGE_GRADIENT_CHUNK = 64
# The analysis's study cache counts only its runs' main tensors against its limit; a full one was measured at
# 1.8x that (analyze at its defaults, benchmarks/results/memory.md).
STUDY_CACHE_OVERHEAD = 1.8


def command_memory(command: str, spec: Any, options: dict[str, Any]) -> int:
    """Bytes `arithlens COMMAND` with `options` (flag names with underscores; missing ones take the command's
    defaults; analyze also reads `figure_workers`, its drawing processes) is estimated to peak at, summed over
    its processes. Only what is in memory at once counts: chunked work adds one chunk, whatever the total."""
    from arithlens.analysis.faithfulness import CHUNK

    f = forward_bytes(spec)
    o = {**COMMAND_DEFAULTS.get(command, {}), **{k: v for k, v in options.items() if v is not None}}
    if command == "useful":
        return int(PROCESS_BYTES + _useful_bytes(o["questions"], o.get("power"), f))
    if command == "search":  # the useful nodes are found first, unless read from a file
        useful = 0 if o.get("nodes") else _useful_bytes(COMMAND_DEFAULTS["useful"]["questions"], None, f)
        # the searches run on top of what the sweep leaves resident: `search` at its defaults peaked at 1,027 MB,
        # the useful sweep's 893 MB plus about the searches' own term (136 MB), as `faithfulness --nodes useful` does
        return int(PROCESS_BYTES + USEFUL_THEN_CHECK * useful + SEARCH_EACH * 2 * o["pairs"] * f)
    if command == "node":
        return int(PROCESS_BYTES + _study_bytes(o["questions"], o["pairs"], f))
    if command == "faithfulness":
        work = FAITHFULNESS_EACH * min(QTYPES * o["questions"], CHUNK) * f
        if o.get("nodes") in ("useful", "circuit"):  # the useful sweep's buffers are still held when the check runs
            work = USEFUL_THEN_CHECK * (work + _useful_bytes(COMMAND_DEFAULTS["useful"]["questions"], None, f))
        if o.get("nodes") == "circuit":
            work = max(work, CIRCUIT_SEARCH_EACH * QTYPES * COMMAND_DEFAULTS["circuit"]["search_questions"] * f)
        return int(PROCESS_BYTES + work)
    if command == "circuit":
        work = max(_useful_bytes(COMMAND_DEFAULTS["useful"]["questions"], None, f),
                   CIRCUIT_SEARCH_EACH * QTYPES * o["search_questions"] * f,
                   FAITHFULNESS_EACH * min(QTYPES * o["held_out"], CHUNK) * f)
        return int(PROCESS_BYTES + work)
    if command == "analyze":
        from arithlens.analysis.analyze import STUDY_CACHE_BYTES

        # The founding heads (the layer-0 heads at A2's position, studied first at `node`'s defaults) run without the
        # cache; the heads after them keep the clean runs they share in a cache of up to STUDY_CACHE_BYTES.
        study = _study_bytes(COMMAND_DEFAULTS["node"]["questions"], COMMAND_DEFAULTS["node"]["pairs"], f)
        cached = o.get("max_studies") is None or o["max_studies"] > spec.n_heads
        stages = [SEARCH_EACH * 2 * o["pairs"] * f, FAITHFULNESS_EACH * min(QTYPES * o["faithfulness"], CHUNK) * f]
        if o.get("circuit"):
            stages.append(CIRCUIT_SEARCH_EACH * QTYPES * COMMAND_DEFAULTS["circuit"]["search_questions"] * f)
        if o.get("edges"):
            stages.append(EDGES_EACH * EDGE_GRADIENT_CHUNK * f)
        # The stages besides the studies are counted on top of what the useful sweep leaves resident (as in `search`):
        # with --max-studies 1 the largest of them alone (edges, 434 MB) fell 0.5 GB short of the measured 1,474 MB.
        # The studies' term (its cache factor calibrated on analyze at its defaults) stands alone: the study loop
        # hands the freed pages back first.
        work = max(USEFUL_THEN_CHECK * _useful_bytes(o["questions"], None, f) + max(stages),
                   study + (STUDY_CACHE_OVERHEAD * STUDY_CACHE_BYTES if cached else 0))
        return int(PROCESS_BYTES + work + o.get("figure_workers", 0) * FIGURE_WORKER_BYTES)
    raise ArithLensError(f"no memory estimate for the command {command!r}")


# The defaults of the options command_memory reads (the commands' own defaults; a test checks they agree).
COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {
    "useful": {"questions": 256, "power": None},
    "search": {"pairs": 100},
    "node": {"questions": 1000, "pairs": 200},
    "faithfulness": {"questions": 10_000},
    "circuit": {"search_questions": 600, "held_out": 10_000},
    "analyze": {"questions": 256, "pairs": 100, "faithfulness": 2000, "circuit": False, "edges": True,
                "max_studies": None},
}


def _useful_bytes(questions: int, power: Optional[int], f: float) -> float:
    """The sweep runs at most `useful.CHUNK` questions per engine (screen and power stage alike)."""
    from arithlens.analysis.useful import CHUNK, questions_for_power

    power = questions_for_power() if power is None else power
    held = HELD_EACH * (questions + CURATED_QUESTIONS) * f  # the question set itself is built whole, not chunked
    items = max(questions + CURATED_QUESTIONS, QTYPES * power)
    next_chunk = USEFUL_NEXT_EACH * CHUNK * f if items > CHUNK else 0.0
    return held + USEFUL_EACH * min(items, CHUNK) * f + next_chunk


CURATED_QUESTIONS = 214  # the curated questions the useful sweep adds to --questions (6 digits)
# What the sweep holds for every question at once, in forward_bytes: its tokens and labels (numpy and torch) and
# a per-node failure record; ~1% of a forward's activations (a lower bound that keeps 10**9 questions refused).
HELD_EACH = 0.01


def _study_bytes(questions: int, pairs: int, f: float) -> float:
    from arithlens.analysis.node_study.necessity import CHUNK
    from arithlens.arith.tricase import CASES

    per_qtype = len(CASES) * questions  # one qtype's necessity set
    return (STUDY_CHUNK_EACH * min(per_qtype, CHUNK) + STUDY_HELD_EACH * QTYPES * per_qtype
            + STUDY_PAIR_EACH * QTYPES * pairs) * f


def check_command_memory(command: str, spec: Any, options: dict[str, Any], scaled_by: dict[str, str]) -> int:
    """Refuse the command up front when its estimate (`command_memory`) exceeds the share of the memory available
    now that one request may take. `scaled_by` maps the options that grow the estimate (in the order to blame
    them) to what they size; the error names the first one that is too large and the most that fits. Returns
    the estimate."""
    need = command_memory(command, spec, options)
    have = available_memory()
    budget = MEMORY_SHARE * have
    if need <= budget:
        return need
    for key, what in scaled_by.items():
        value = options.get(key)
        if not value:
            continue
        most = _most_that_fits(command, spec, options, key, budget)
        if most < value:
            flag = "--" + key.replace("_", "-")
            advice = f"ask for at most about {most:,}" if most >= 1 else "it does not fit even at 1"
            raise ResourceError(f"{flag} {value:,} needs about {_gb(need)} of memory for {what}, more than the "
                                f"{_gb(have)} available: {advice}")
    raise ResourceError(f"{command} needs about {_gb(need)} of memory even for one chunk of its work, more than the "
                        f"{_gb(have)} available")


def _most_that_fits(command: str, spec: Any, options: dict[str, Any], key: str, budget: float) -> int:
    """The largest value of option `key` (the others as given) whose estimate fits in `budget` (0: none does);
    estimates grow with every count, so a bisection finds it."""
    low, high = 0, int(options[key])
    while low < high:
        mid = (low + high + 1) // 2
        if command_memory(command, spec, {**options, key: mid}) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


# ---------------------------------------------------------------------------------------------------
# The train config (`--config` JSON): one schema with the types and ranges of every recipe field


def _schema():
    """The pydantic model, built on first use (pydantic costs ~0.2 s to import; only `train` needs it)."""
    from typing import Annotated

    from pydantic import BaseModel, ConfigDict, Field

    Positive = Annotated[int, Field(ge=1)]
    Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
    NonNegative = Annotated[int, Field(ge=0)]
    Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    Rate = Annotated[float, Field(gt=0, allow_inf_nan=False)]
    Beta = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
    NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]

    class TrainConfigSchema(BaseModel):
        # strict: "abc", "10", 10.5 and true are not steps; an int is a fine float
        model_config = ConfigDict(strict=True, extra="forbid")

        steps: Steps
        batch_size: Positive = 128
        lr: Rate = 1e-3
        warmup_steps: NonNegative = 200
        min_lr: NonNegFloat = 1e-5
        weight_decay: NonNegFloat = 0.1
        beta1: Beta = 0.9
        beta2: Beta = 0.98
        grad_clip: NonNegFloat = 1.0
        cascade: Share = 0.4
        equal: Share = 0.01
        shared_low: Share = 0.0
        near_cascade: Share = 0.0
        shared_high: Share = 0.0
        init_from: Optional[str] = None
        eval_every: Positive = 500
        eval_questions: Positive = 2000
        checkpoint_every: Positive = 1000
        data_seed: Optional[NonNegative] = None
        insert_from: Optional[str] = None
        insert_freeze: bool = False
        insert_reset_every: NonNegative = 0
        curriculum_steps: NonNegative = 0
        aux_loss: NonNegFloat = 0.0
        aux_layer: Optional[NonNegative] = None

    return TrainConfigSchema


_SCHEMA: Any = None


def train_config(data: Any, where: str = "training config") -> dict[str, Any]:
    """The recipe dict `data` checked field by field; the first problem is a one-line error naming the field."""
    global _SCHEMA
    from pydantic import ValidationError

    if not isinstance(data, dict):
        raise ArithLensError(f"{where} must be a JSON object of recipe fields, not a {_json_type(data)}")
    if _SCHEMA is None:
        _SCHEMA = _schema()
    try:
        return _SCHEMA.model_validate(data).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "config"
        value = first.get("input")
        shown = "missing" if first["type"] == "missing" else f"got {value!r}"
        message = first["msg"][0].lower() + first["msg"][1:]
        if first["type"] == "extra_forbidden":
            message = f"unknown field (known: {', '.join(_SCHEMA.model_fields)})"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ArithLensError(f"{where}: '{field}': {message}, {shown}{more}") from None


def _json_type(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def check_same_model(named: Optional[str], spec: Any, source: str) -> None:
    """A file or result written for model `named` used with the model `spec`: the names must agree (an empty or
    absent name says nothing). Node sets of one model run silently on another when the positions happen to fit."""
    if not named or named in (spec.name, spec.base_name):
        return
    from arithlens.errors import ConflictError

    raise ConflictError(f"{source} was written for {named}, but the model is {spec.name}: give the node set of "
                        "this model (or --model of that one)")


def model_named_by_file(path: Any) -> Optional[str]:
    """The model a result file's name states (`<model>_behavior.json`, `<model>_circuit.json`, ...), if any."""
    from pathlib import Path

    from arithlens.model.spec import ModelSpec

    stem = Path(path).stem
    while "_" in stem:
        stem = stem.rsplit("_", 1)[0]
        try:
            return ModelSpec.parse(stem).base_name
        except ArithLensError:
            continue
    return None


def finite(flag: str, value: Optional[float], *, positive: bool = False) -> Optional[float]:
    """A float option that must be finite (and > 0 with `positive`)."""
    if value is None:
        return None
    if not math.isfinite(value) or (positive and value <= 0):
        raise ArithLensError(f"{flag} must be a finite number{' > 0' if positive else ''}, not {value}")
    return value


__all__ = ["MAX_PERMUTATIONS", "MAX_STEPS", "available_memory", "check_choice", "check_command_memory", "check_count",
           "check_finite_json", "check_int", "check_memory", "check_range", "check_same_model", "check_seed",
           "check_threads", "check_weights", "command_memory", "model_named_by_file", "finite", "forward_bytes",
           "read_json_object", "train_config", "usable_cores"]
