"""`ModelSpec`: the immutable description of one model, and the reference model-name grammar.

Grammar (the predecessor's model names), parsed with one regex on the whole name:

    [ins{M}_]{OP}_d{N}_l{L}_h{H}_t{K}K[_gf]_s{SEED}[,{INSERT_NAME}]

e.g. `add_d6_l2_h3_t15K_s372001`, `ins1_mix_d6_l3_h4_t40K_s372001,add_d6_l2_h3_t15K_s372001`.
Parse and format round-trip losslessly (`mas` stays `mas`). One extension: a step count that is not
a multiple of 1000 is written without the K (`t1500`), so every spec has a name; `t2000` is rejected
because its only spelling is `t2K`. Numbers have no leading zeros, except the seed, which is exactly
six digits (`s012345`).

Sizes that the name does not carry default to the reference models (d_model 510, d_head 170,
d_mlp 4 x d_model, relu) and can be overridden: `ModelSpec.parse(name, d_model=128, d_head=32)`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from arithlens.arith.layout import Layout
from arithlens.arith.vocab import D_VOCAB
from arithlens.errors import ArithLensError, ParseError

OPS = ("add", "sub", "mix", "mul", "mas")
ACT_FNS = ("relu",)
MAX_INSERT_MODE = 5
GRAMMAR = "[insM_]OP_dN_lL_hH_tKK[_gf]_sSEED"

_NAME_RE = re.compile(
    r"(?:ins(?P<ins>[1-9]\d*)_)?"
    r"(?P<op>add|sub|mix|mul|mas)"
    r"_d(?P<d>[1-9]\d*)_l(?P<l>[1-9]\d*)_h(?P<h>[1-9]\d*)"
    r"_t(?P<t>[1-9]\d*)(?P<k>K?)"
    r"(?P<gf>_gf)?"
    r"_s(?P<seed>\d{6})"
)
# Fields the name carries; everything else may be given to `parse` as an override.
_NAME_FIELDS = frozenset(
    {"n_digits", "n_layers", "n_heads", "op", "insert_mode", "training_steps", "seed", "grokfast", "insert_name"}
)


def default_percentages(op: str, insert_mode: int = 0) -> tuple[int, int]:
    """(perc_sub, perc_mul) that the reference derives from the operation in the name."""
    if op == "add":
        return 0, 0
    if op == "sub":
        return 100, 0
    if op == "mul":
        return 0, 100
    if op == "mix":
        return (80 if insert_mode > 0 else 66), 0
    if op == "mas":
        return 30, 50
    raise ArithLensError(f"operation {op!r} is not one of {', '.join(OPS)}")


@dataclass(frozen=True)
class ModelSpec:
    """Shape, task mix and training identity of one model. Defaults are the reference models'."""

    n_digits: int = 6
    n_layers: int = 3
    n_heads: int = 4
    d_model: int = 510
    d_head: int = 170
    d_mlp: int | None = None  # None -> 4 * d_model
    act_fn: str = "relu"
    op: str = "add"
    perc_sub: int | None = None  # None -> from op (and insert_mode for mix)
    perc_mul: int | None = None
    insert_mode: int = 0
    training_steps: int = 15_000
    seed: int = 372_001
    grokfast: bool = False
    insert_name: str | None = None  # spec name of the smaller model inserted at initialisation

    def __post_init__(self) -> None:
        for field in ("n_digits", "n_layers", "n_heads", "d_model", "d_head", "training_steps"):
            _check_int(field, getattr(self, field), low=1)
        _check_int("seed", self.seed, low=0, high=999_999)
        _check_int("insert_mode", self.insert_mode, low=0, high=MAX_INSERT_MODE)
        if self.op not in OPS:
            raise ArithLensError(f"operation {self.op!r} is not one of {', '.join(OPS)}")
        # Frozen: fill the derived defaults through object.__setattr__, once, here.
        sub, mul = default_percentages(self.op, self.insert_mode)
        for field, default in (("d_mlp", 4 * self.d_model), ("perc_sub", sub), ("perc_mul", mul)):
            if getattr(self, field) is None:
                object.__setattr__(self, field, default)
        _check_int("d_mlp", self.d_mlp, low=1)
        _check_int("perc_sub", self.perc_sub, low=0, high=100)
        _check_int("perc_mul", self.perc_mul, low=0, high=100)
        self._check_mix()
        if self.act_fn not in ACT_FNS:
            raise ArithLensError(f"act_fn {self.act_fn!r} is not one of {', '.join(ACT_FNS)}")
        if not isinstance(self.grokfast, bool):
            raise ArithLensError(f"grokfast must be True or False, not {self.grokfast!r}")
        if self.insert_name is not None:
            if self.insert_mode == 0:
                raise ArithLensError(f"insert model {self.insert_name!r} given but insert_mode is 0")
            _match(self.insert_name, what="insert model name")

    def _check_mix(self) -> None:
        sub, mul = self.perc_sub, self.perc_mul
        ok = {
            "add": sub == 0 and mul == 0,
            "sub": sub == 100 and mul == 0,
            "mul": sub == 0 and mul == 100,
            "mix": mul == 0 and 0 < sub < 100,
            "mas": sub > 0 and mul > 0 and sub + mul < 100,
        }[self.op]
        if not ok:
            raise ArithLensError(f"perc_sub {sub} / perc_mul {mul} do not describe operation {self.op!r}")

    # ---- derived values ----

    @property
    def perc_add(self) -> int:
        return max(0, 100 - self.perc_sub - self.perc_mul)

    @property
    def n_ctx(self) -> int:
        return 3 * self.n_digits + 4

    @property
    def d_vocab(self) -> int:
        return D_VOCAB

    @property
    def layout(self) -> Layout:
        return Layout(self.n_digits)

    @property
    def insert_spec(self) -> ModelSpec | None:
        """The inserted smaller model, with this model's d_model and d_head (insertion requires them equal)."""
        if self.insert_name is None:
            return None
        return ModelSpec.parse(self.insert_name, d_model=self.d_model, d_head=self.d_head, act_fn=self.act_fn)

    # ---- the name grammar ----

    @property
    def base_name(self) -> str:
        """The name without the `,INSERT_NAME` part."""
        ins = f"ins{self.insert_mode}_" if self.insert_mode else ""
        steps = f"{self.training_steps // 1000}K" if self.training_steps % 1000 == 0 else str(self.training_steps)
        gf = "_gf" if self.grokfast else ""
        return f"{ins}{self.op}_d{self.n_digits}_l{self.n_layers}_h{self.n_heads}_t{steps}{gf}_s{self.seed:06d}"

    @property
    def name(self) -> str:
        return self.base_name if self.insert_name is None else f"{self.base_name},{self.insert_name}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str, **overrides: Any) -> ModelSpec:
        """`ModelSpec.parse("add_d6_l2_h3_t15K_s372001", d_model=128)`; overrides may not repeat name fields."""
        if not isinstance(name, str):
            raise ParseError(f"model name must be a string, not {type(name).__name__}")
        clash = sorted(_NAME_FIELDS & overrides.keys())
        if clash:
            raise ArithLensError(
                f"override {clash[0]!r} is part of the model name {name!r}; use dataclasses.replace on the parsed spec"
            )
        unknown = sorted(overrides.keys() - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ArithLensError(f"unknown ModelSpec field {unknown[0]!r}")
        base, sep, insert_name = name.partition(",")
        fields = _match(base, what="model name")
        if sep:
            _match(insert_name, what="insert model name")
            fields["insert_name"] = insert_name
        try:
            return cls(**fields, **overrides)
        except ParseError:
            raise
        except ArithLensError as exc:
            raise ParseError(f"model name {name!r}: {exc}") from None

    # ---- JSON ----

    def to_dict(self) -> dict[str, Any]:
        """Every field (resolved), plus the name for readers; `from_dict` checks that the name agrees."""
        return {"name": self.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        if not isinstance(data, dict):
            raise ArithLensError(f"a model spec must be a JSON object, not {type(data).__name__}")
        fields = dict(data)
        name = fields.pop("name", None)
        unknown = sorted(fields.keys() - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ArithLensError(f"unknown ModelSpec field {unknown[0]!r}")
        spec = cls(**fields)
        if name is not None and name != spec.name:
            raise ArithLensError(f"spec name {name!r} does not match its fields, which give {spec.name!r}")
        return spec


def _check_int(field: str, value: Any, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArithLensError(f"{field} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ArithLensError(f"{field} {value} is outside {bound}")


def _match(name: str, *, what: str) -> dict[str, Any]:
    """The name fields of one (comma-free) name, or a ParseError."""
    m = _NAME_RE.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise ParseError(f"{what} {name!r} is malformed: expected {GRAMMAR}")
    steps = int(m["t"]) * (1000 if m["k"] else 1)
    if not m["k"] and steps % 1000 == 0:
        raise ParseError(f"{what} {name!r} is malformed: write t{steps // 1000}K, not t{steps}")
    return {
        "insert_mode": int(m["ins"] or 0),
        "op": m["op"],
        "n_digits": int(m["d"]),
        "n_layers": int(m["l"]),
        "n_heads": int(m["h"]),
        "training_steps": steps,
        "grokfast": m["gf"] is not None,
        "seed": int(m["seed"]),
    }
