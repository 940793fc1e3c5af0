"""What a sub-task spec is and how its question pairs and expected answers are drawn; the catalogues of
specs live beside it (`add_sub`, `mul`).

A spec says, for an alter digit k: how to draw many (store, clean) question pairs that differ in the
property the sub-task is about (`PairRecipe`), what the clean answer should become when a node doing
that sub-task carries the store's value instead (`Effect`, computed from the task layer's per-digit
features, never written out), and which useful nodes are worth testing (`Prerequisite`, with its
reasoning as a field). OPR and SGN are twofold: an attention fact (a head attending the operator / the answer
sign; the bare tag `OPR` / `SGN`) and a causal test per answer digit (`A2.OPR`: patching the node from the
same operands under the other operator turns answer digit 2 into the other operation's digit; `A2.SGN`: patching
it from a question of the other sign class with the same digits at and below 2 turns A2 into that class's digit).

Tag-index conventions (the predecessor's): SA/MD/ND/ST/MT/NT/GT tags carry the operand digit used,
SC/MB/NB/SS/MZ/NZ the lower digit that makes the carry/borrow, so `A1.SC` changes A2 (computed at P18
for 6 digits). Digit references in specs are tiny expressions in k, n and c: "k", "k+1", "n-2", "c+1", "sign",
where c is a multiplication's top partial-product column (2m-2 for m-digit MUL operands: 4 for 6 digits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from arithlens.analysis import filters as F
from arithlens.analysis.nodes import Major
from arithlens.arith.layout import Layout
from arithlens.arith.mul import mul_columns
from arithlens.arith.questions import OPERATOR_OF, QType, QuestionBatch, digits_of, mul_operand_digits
from arithlens.arith.vocab import MINUS, PLUS
from arithlens.errors import ArithLensError, QuestionRequestError

DEFAULT_PAIRS = 100
DEFAULT_MIN_ATTN = 10  # percent: the attention a head must pay a digit to count as attending it

_ALL = np.array([(x, y) for x in range(10) for y in range(10)], dtype=np.int8)
_X, _Y = _ALL[:, 0].astype(int), _ALL[:, 1].astype(int)
PAIR_CLASSES: dict[str, np.ndarray] = {
    "any": _ALL,
    "sum<=8": _ALL[_X + _Y <= 8],  # never carries, even with a carry in
    "sum=9": _ALL[_X + _Y == 9],  # carries only if a carry arrives
    "sum>=10": _ALL[_X + _Y >= 10],  # always carries
    "x>y": _ALL[_X > _Y],
    "x=y": _ALL[_X == _Y],
    "x<y": _ALL[_X < _Y],
    "x>=y": _ALL[_X >= _Y],
    "x<=y": _ALL[_X <= _Y],
}

_REF_RE = re.compile(r"\s*(k|n|c)\s*(?:([+-])\s*(\d+))?\s*|\s*(\d+)\s*")


def digit_ref(ref: str, *, k: int = 0, n: int = 0) -> int:
    """Evaluate a digit reference: "k", "k+1", "n-2", "c+1" (c: the top MUL partial-product column), "3"."""
    m = _REF_RE.fullmatch(ref)
    if m is None:
        raise ArithLensError(f"bad digit reference {ref!r}; expected e.g. k, k+1, n-2, c or 3")
    if m[4] is not None:
        return int(m[4])
    base = {"k": k, "n": n, "c": 2 * mul_operand_digits(max(n, 1)) - 2}[m[1]]
    offset = int(m[3] or 0)
    return base - offset if m[2] == "-" else base + offset


# ---------------------------------------------------------------------------------------------------
# What a spec holds


@dataclass(frozen=True)
class Prerequisite:
    """Which useful nodes are candidates at alter digit k (exact tag semantics, `arithlens.analysis.filters`).

    window: "late" = from the sign position to where the impacted answer digit is computed (P14..P18 for
        A2 with 6 digits); "early" = from the operator to the sign (P6..P14); "sign" = up to `=`, where
        the sign is predicted (P0..P13); "span" = from the operator to where the impacted digit is computed
        (P6..P18 for A2): for what question tokens can already hold (the operator; a carry or borrow
        passed on through a digit, which a head at D'(k-1)'s position can see).
    attends: digit references a: the unit tested (a single head, or two heads of one layer at one
        position: the predecessor's "virtual head") must attend both Da and D'a with at least `min_pct`
        percent; a layer-0 head joins the pool when it attends either (operand-copy heads split the pair).
        The clause binds layer-0 heads only: their keys are the tokens themselves, while a deeper head
        attending P9 reads whatever earlier layers moved there, so where it looks says little about which
        digits it carries. Deeper heads and MLP nodes are judged by the patch alone.
    token: "opr" or "sign" instead of `attends`: a layer-0 head must attend that token (the OPR and SGN
        tests, where the operator / the answer's sign is what store and clean differ in).
    impact: digit reference ("k", "k+1", "sign") that the node's Impact tag must include.
    fails: a complexity major (Math.Add / Math.Sub / Math.Neg): the node's ablation must fail some
        questions of that kind.
    """

    window: str
    reason: str
    attends: tuple[str, ...] = ()
    impact: str | None = None
    fails: Major | None = None
    token: str | None = None

    def positions(self, k: int, layout: Layout) -> tuple[int, int]:
        """(lowest, highest) position of a candidate."""
        if self.window == "early":
            return layout.opr_pos, layout.sign_pos
        if self.window == "sign":
            return 0, layout.eq_pos
        if self.window in ("late", "span"):
            if self.impact is None:
                raise ArithLensError(f"a {self.window}-window prerequisite needs an impact digit")
            first = layout.sign_pos if self.window == "late" else layout.opr_pos
            return first, layout.computed_at(self.impact_digit(k, layout))
        raise ArithLensError(f"unknown window {self.window!r}; expected late, early, sign or span")

    def attended(self, k: int, layout: Layout) -> list[tuple[int, ...]]:
        """The positions a layer-0 head must attend, as alternatives: (Da, D'a) for each attended digit a,
        or the one token position."""
        if self.token is not None:
            return [(_token_pos(self.token, layout),)]
        digits = (digit_ref(ref, k=k, n=layout.n_digits) for ref in self.attends)
        return [(layout.d_pos(a), layout.dp_pos(a)) for a in digits]

    def covers(self, nodes, k: int, layout: Layout, *, min_pct: int = DEFAULT_MIN_ATTN) -> bool:
        """Whether layer-0 heads tested together attend every required token (always true for others). A head
        at a required token's own position has that token in its residual stream already: at D'a's position,
        attending Da is enough to bring the pair together."""
        if any(not un.node.is_head or un.node.layer > 0 for un in nodes):
            return True
        seen = {p for un in nodes for p, pct in un.attention().items() if pct >= min_pct}
        seen |= {un.node.position for un in nodes}
        return all(p in seen for pair in self.attended(k, layout) for p in pair)

    def impact_digit(self, k: int, layout: Layout) -> int:
        if self.impact == "sign":
            return layout.n_digits + 1
        return digit_ref(self.impact, k=k, n=layout.n_digits)

    def filter(self, k: int, layout: Layout, *, min_pct: int = DEFAULT_MIN_ATTN) -> F.Filter:
        lo, hi = self.positions(k, layout)
        common: list[F.Filter] = [F.Position(lo, F.Cond.MIN), F.Position(hi, F.Cond.MAX)]
        if self.impact is not None:
            common.append(F.Impact(self.impact_digit(k, layout)))
        if self.fails is not None:
            common.append(F.Contains(self.fails, _COMPLEXITY_PREFIX[self.fails]))
        attend = [F.Or(*(F.Attention(p, min_pct) for p in pair)) for pair in self.attended(k, layout)]
        kinds = F.Or(F.And(F.Head(), F.Layer(0), *attend), F.And(F.Head(), F.Not(F.Layer(0))), F.Neuron())
        return F.And(kinds, *common)


_COMPLEXITY_PREFIX = {Major.MATH_ADD: "S", Major.MATH_SUB: "M", Major.MATH_NEG: "N"}


def _token_pos(token: str, layout: Layout) -> int:
    if token == "opr":
        return layout.opr_pos
    if token == "sign":
        return layout.sign_pos
    raise ArithLensError(f"unknown token {token!r}; expected opr or sign")


@dataclass(frozen=True)
class PairRecipe:
    """How to draw (store, clean) pairs at alter digit k. Digits not named are uniform.

    clean: (digit reference, pair class) the clean question has; references outside 0..n-1 are
        skipped (k+1 at the top digit is the carry digit A(n), not an operand digit).
    store: (digit reference, pair class) redrawn in the store; every other digit equals the clean's.
    above: pair class of every digit above the highest named one (GT: "x=y", so digit k decides).
    no_carry_in: no carry (ADD) or borrow (SUB: a - b; NEG: b - a) reaches digit k in the clean
        question (nor in the store, which shares the digits below k unless it redraws them).
    differ / same: a real feature (`QuestionBatch.features.real`) whose value at digit k must differ /
        agree between store and clean.
    store_qtype: the store's question type when it is not the clean's (GT, OPR, SGN).
    store_above: pair class of every digit above k, redrawn in the store (SGN: the digits above k flip the
        sign class while the digits at and below k stay the clean's).
    mirror: the second half of the pairs swaps store and clean (GT tests SUB->NEG and NEG->SUB).
    fresh_store: the store is a new question drawn independently of the clean (MUL: a column's sum depends on
        every operand digit, so no single digit's class isolates it; `differ` / `same` pick the pairs).
    min_rows: draw at least this many candidates at a time (an accept condition met by few rows).
    MUL questions use only the low m = ceil(n/2) operand digits; the digits above are 0.
    """

    qtype: QType
    clean: tuple[tuple[str, str], ...] = ()
    store: tuple[tuple[str, str], ...] = ()
    above: str = "any"
    no_carry_in: bool = False
    differ: str | None = None
    same: str | None = None
    store_qtype: QType | None = None
    store_above: str | None = None
    mirror: bool = False
    fresh_store: bool = False
    min_rows: int = 0


@dataclass(frozen=True)
class Effect:
    """The expected clean answer after a patch.

    kind "digit": |answer| changes by `sign` x (feature(store) - feature(clean)) x 10^digit, where the
        feature is a real per-digit feature at k (SA, SC, MB, ...): e.g. SC at k adds 10^(k+1) when the
        store makes a carry the clean does not; MD replaces answer digit k by the store's. The sign of
        the answer is the clean's.
    kind "sign": only the answer's sign is judged and it should be the store's.
    kind "store_digit": only answer digit `digit` is judged and it should be the store's (the clean's sign and
        other digits are not judged: a node that tells every digit which operation to do may change them all).
        Pairs whose store and clean answers agree at that digit predict nothing and are not drawn.
    kind "column": only answer digit `digit` is judged: it becomes (clean digit + feature(store) - feature(clean))
        mod 10, the digit a column quantity gives at its own column (MUL). The digits above follow through the
        carry, but they are predicted at earlier positions, which a node where Ak is computed cannot reach; a
        node holding the carry for them is another column's sub-task. Pairs whose digit would not change are
        not drawn.
    """

    kind: str
    feature: str | None = None
    digit: str = "k"
    sign: int = 1


@dataclass(frozen=True)
class SubTask:
    """One algorithm sub-task: name, meaning, the digits it applies to, pairs, effect and candidates."""

    name: str
    op: str  # "ADD", "SUB", "NEG", "SUB/NEG" (which question types the pairs are)
    meaning: str
    digits: tuple[str, str]  # first and last alter digit, as references in n
    prereq: Prerequisite | None  # None for the attention facts
    recipe: PairRecipe | None = None
    effect: Effect | None = None
    attends_to: str | None = None  # also an attention fact (bare tag): "opr" or "sign"
    weak: bool = True  # a weak pass (right digits change, value not checked) may tag

    @property
    def is_attention_fact(self) -> bool:
        return self.attends_to is not None

    def digit_range(self, n_digits: int) -> range:
        """Alter digits with question pairs (none for a pure attention fact). Answer-digit tests reach A(n)."""
        if self.recipe is None:
            return range(0)
        lo, hi = (digit_ref(r, n=n_digits) for r in self.digits)
        # answer-digit tests and MUL columns reach A(n); ADD/SUB operand digits stop at n-1
        top = n_digits if self.effect.kind == "store_digit" or self.op == "MUL" else n_digits - 1
        return range(max(lo, 0), min(hi, top) + 1)

    def tag(self, k: int | None = None) -> str:
        """`A1.SC`; `OPR` / `SGN` (no digit) for the attention facts."""
        if k is None:
            if not self.is_attention_fact:
                raise ArithLensError(f"{self.name} tags need a digit")
            return self.name
        return f"A{k}.{self.name}"

    def check_digit(self, n_digits: int, k: int) -> None:
        if k not in self.digit_range(n_digits):
            r = self.digit_range(n_digits)
            span = f"{r.start}..{r.stop - 1}" if len(r) else "none"
            raise QuestionRequestError(f"{self.name} applies to digits {span} for {n_digits} digits, not {k}")

    def pairs(self, n_digits: int, k: int, count: int, rng: np.random.Generator) -> Pairs:
        """`count` (store, clean) pairs at alter digit k with their expected answers."""
        if self.recipe is None:
            raise ArithLensError(f"{self.name} is only an attention fact: it has no question pairs")
        self.check_digit(n_digits, k)
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise QuestionRequestError(f"pair count must be a positive integer, got {count!r}")
        store, clean = _draw(self.recipe, n_digits, k, int(count), rng, lambda s, c: self._representable(s, c, k))
        return self.pairs_from(store, clean, k)

    def _representable(self, store: QuestionBatch, clean: QuestionBatch, k: int) -> np.ndarray:
        """Rows whose expected answer fits n+1 digits and, for digit effects, keeps the clean's sign token
        (a negative answer whose expected magnitude is 0 would be written +0000000); for store-digit
        effects, rows whose two answers differ at the judged digit."""
        if self.effect.kind == "sign":
            return np.ones(len(clean), dtype=bool)
        if self.effect.kind == "store_digit":
            d = digit_ref(self.effect.digit, k=k, n=clean.n_digits)
            return _digit(store.result, d) != _digit(clean.result, d)
        if self.effect.kind == "column":
            return _column_delta(self.effect, store, clean, k) % 10 != 0
        magnitude = _expected_magnitude(self.effect, store, clean, k)
        fits = (magnitude >= 0) & (magnitude < 10 ** (clean.n_digits + 1))
        return fits & ((clean.result >= 0) | (magnitude > 0))

    def pairs_from(self, store: QuestionBatch, clean: QuestionBatch, k: int) -> Pairs:
        """Wrap given questions (e.g. hand-written ones) with this task's expected answers."""
        if self.effect is None:
            raise ArithLensError(f"{self.name} is only an attention fact: it has no expected answers")
        expected, judged = expected_answers(self.effect, store, clean, k)
        return Pairs(self, k, store, clean, expected, judged)


@dataclass(frozen=True, eq=False)
class Pairs:
    """Paired questions (row i of `store` goes with row i of `clean`) and the expected patched answers.

    Answer arrays are (batch, n_answer) with column 0 the sign A(n+1), then A(n) .. A0, like the tokens.
    """

    task: SubTask
    digit: int
    store: QuestionBatch
    clean: QuestionBatch
    expected: np.ndarray  # (batch,) int64 expected result of the patched clean question
    judged: np.ndarray = field(repr=False)  # (n_answer,) bool: answer positions the verdict looks at

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def n_digits(self) -> int:
        return self.clean.n_digits

    @property
    def tag(self) -> str:
        return self.task.tag(self.digit)

    @cached_property
    def expected_tokens(self) -> np.ndarray:
        return answer_tokens(self.n_digits, self.expected)

    @cached_property
    def clean_tokens(self) -> np.ndarray:
        return self.clean.tokens[:, self.clean.layout.n_question:].astype(np.int64)

    @cached_property
    def store_tokens(self) -> np.ndarray:
        return self.store.tokens[:, self.store.layout.n_question:].astype(np.int64)

    @cached_property
    def impact(self) -> np.ndarray:
        """(batch, n_answer) bool: judged answer positions where the expected answer differs from the clean."""
        return (self.expected_tokens != self.clean_tokens) & self.judged

    def impact_digits(self, row: int) -> tuple[int, ...]:
        """Answer digits the expected answer changes in one row, highest first (sign = n+1)."""
        n_answer = self.clean.layout.n_answer
        return tuple(n_answer - 1 - j for j in np.flatnonzero(self.impact[row]))


def answer_tokens(n_digits: int, values: np.ndarray) -> np.ndarray:
    """Results -> (batch, n+2) answer tokens: sign (+ for zero), then n+1 magnitude digits."""
    values = np.asarray(values, dtype=np.int64)
    out = np.empty((len(values), n_digits + 2), dtype=np.int64)
    out[:, 0] = np.where(values < 0, MINUS, PLUS)
    out[:, 1:] = digits_of(np.abs(values), n_digits + 1)[:, ::-1]
    return out


def expected_answers(effect: Effect, store: QuestionBatch, clean: QuestionBatch,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
    """(expected results, judged answer positions) from the task layer's features."""
    layout = clean.layout
    judged = np.ones(layout.n_answer, dtype=bool)
    if effect.kind == "sign":
        judged[1:] = False
        sign = np.where(store.result < 0, -1, 1)
        return sign * np.abs(clean.result), judged  # only the sign is judged
    if effect.kind == "store_digit":
        d = digit_ref(effect.digit, k=k, n=layout.n_digits)
        judged[:] = False
        judged[layout.n_answer - 1 - d] = True  # column 0 is the sign A(n+1), the last column A0
        place = 10 ** np.int64(d)
        magnitude = np.abs(clean.result) + (_digit(store.result, d) - _digit(clean.result, d)) * place
        return np.where(clean.result < 0, -magnitude, magnitude), judged
    if effect.kind == "column":
        d = digit_ref(effect.digit, k=k, n=layout.n_digits)
        judged[:] = False
        judged[layout.n_answer - 1 - d] = True
        old = _digit(clean.result, d)
        place = 10 ** np.int64(d)
        return np.abs(clean.result) + ((old + _column_delta(effect, store, clean, k)) % 10 - old) * place, judged
    if effect.kind != "digit" or effect.feature is None:
        raise ArithLensError(f"unknown effect {effect!r}")
    magnitude = _expected_magnitude(effect, store, clean, k)
    if (magnitude < 0).any() or (magnitude >= 10 ** (layout.n_digits + 1)).any():
        raise QuestionRequestError(f"an expected answer does not fit {layout.n_digits + 1} digits; check the pairs")
    return np.where(clean.result < 0, -magnitude, magnitude), judged


def _digit(results: np.ndarray, d: int) -> np.ndarray:
    """Digit d of |result| (d = n is the carry digit A(n))."""
    return np.abs(results).astype(np.int64) // 10 ** np.int64(d) % 10


# MUL sub-task features: per answer column k (arith.mul), named like the tasks that test them.
MUL_FEATURES = {"PS": "column_sum", "PC": "carry_in", "PR": "running"}


def real_feature(batch: QuestionBatch, name: str) -> np.ndarray:
    """(batch, columns) the real per-digit feature `name`: the task layer's ADD/SUB/NEG features, or a MUL
    column quantity (0 in rows that are not MUL)."""
    if name in MUL_FEATURES:
        mul = batch.qtype == QType.MUL
        return mul_columns(np.where(mul, batch.a, 0), np.where(mul, batch.b, 0), batch.n_digits)[MUL_FEATURES[name]]
    return batch.features.real[name]


def _column_delta(effect: Effect, store: QuestionBatch, clean: QuestionBatch, k: int) -> np.ndarray:
    """(batch,) feature(store) - feature(clean) at column k, times the effect's sign."""
    f_store = real_feature(store, effect.feature)[:, k].astype(np.int64)
    return effect.sign * (f_store - real_feature(clean, effect.feature)[:, k].astype(np.int64))


def _expected_magnitude(effect: Effect, store: QuestionBatch, clean: QuestionBatch, k: int) -> np.ndarray:
    f_store = real_feature(store, effect.feature)[:, k].astype(np.int64)
    f_clean = real_feature(clean, effect.feature)[:, k].astype(np.int64)
    place = 10 ** np.int64(digit_ref(effect.digit, k=k, n=clean.n_digits))
    return np.abs(clean.result) + effect.sign * (f_store - f_clean) * place


# ---------------------------------------------------------------------------------------------------
# Drawing pairs


def _carry_in(batch: QuestionBatch, k: int) -> np.ndarray:
    """(batch,) 1 where a carry (ADD) or borrow (SUB: a-b, NEG: b-a) reaches digit k."""
    if k == 0:
        return np.zeros(len(batch), dtype=np.int8)
    real = batch.features.real
    out = np.where(batch.qtype == QType.ADD, real["SC"][:, k - 1], real["MB"][:, k - 1])
    return np.where(batch.qtype == QType.NEG, real["NB"][:, k - 1], out)


def _fill(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, col: int, cls: str) -> None:
    if cls not in PAIR_CLASSES:
        raise ArithLensError(f"unknown pair class {cls!r}; expected one of {', '.join(PAIR_CLASSES)}")
    pairs = PAIR_CLASSES[cls]
    pick = pairs[rng.integers(0, len(pairs), size=len(x))]
    x[:, col], y[:, col] = pick[:, 0], pick[:, 1]


def _values(digits: np.ndarray) -> np.ndarray:
    return (digits.astype(np.int64) * 10 ** np.arange(digits.shape[1], dtype=np.int64)).sum(1)


def _candidates(recipe: PairRecipe, n: int, k: int, rows: int, rng: np.random.Generator):
    """Draw `rows` candidate pairs (not yet checked against the recipe's row conditions)."""
    named = [(digit_ref(r, k=k, n=n), c) for r, c in recipe.clean]
    changed = [(digit_ref(r, k=k, n=n), c) for r, c in recipe.store]
    x = rng.integers(0, 10, size=(rows, n), dtype=np.int8)
    y = rng.integers(0, 10, size=(rows, n), dtype=np.int8)
    top = max([d for d, _ in named + changed if 0 <= d < n] + [k])
    for d in range(top + 1, n):
        _fill(rng, x, y, d, recipe.above)
    for d, cls in named:
        if 0 <= d < n:
            _fill(rng, x, y, d, cls)
    xs, ys = x.copy(), y.copy()
    for d, cls in changed:
        if 0 <= d < n:
            _fill(rng, xs, ys, d, cls)
    if recipe.store_above is not None:
        for d in range(k + 1, n):
            _fill(rng, xs, ys, d, recipe.store_above)
    if recipe.fresh_store:
        xs = rng.integers(0, 10, size=(rows, n), dtype=np.int8)
        ys = rng.integers(0, 10, size=(rows, n), dtype=np.int8)
    if QType.MUL in (recipe.qtype, recipe.store_qtype):  # the product must fit n+1 digits
        m = mul_operand_digits(n)
        for digits in (x, y, xs, ys):
            digits[:, m:] = 0
    clean_op = OPERATOR_OF[recipe.qtype]
    store_op = OPERATOR_OF[recipe.store_qtype or recipe.qtype]
    clean = QuestionBatch(n, _values(x), np.full(rows, clean_op, np.int8), _values(y))
    store = QuestionBatch(n, _values(xs), np.full(rows, store_op, np.int8), _values(ys))
    return store, clean


def _accept(recipe: PairRecipe, store: QuestionBatch, clean: QuestionBatch, k: int) -> np.ndarray:
    ok = (clean.qtype == recipe.qtype) & (store.qtype == (recipe.store_qtype or recipe.qtype))
    if recipe.no_carry_in:
        ok &= _carry_in(clean, k) == 0
    if recipe.differ is not None:
        ok &= real_feature(store, recipe.differ)[:, k] != real_feature(clean, recipe.differ)[:, k]
    if recipe.same is not None:
        ok &= real_feature(store, recipe.same)[:, k] == real_feature(clean, recipe.same)[:, k]
    return ok


MAX_DRAWS = 200


def _draw(recipe: PairRecipe, n: int, k: int, count: int, rng: np.random.Generator, also=None):
    """Rejection sampling by whole vectorised batches; an impossible recipe is an error, not a hang.
    `also(store, clean)` is a further per-row condition."""
    stores, cleans, have = [], [], 0
    for _ in range(MAX_DRAWS):
        need = count - have
        store, clean = _candidates(recipe, n, k, max(2 * need + 16, recipe.min_rows), rng)
        ok = _accept(recipe, store, clean, k)
        if also is not None:
            ok &= also(store, clean)
        keep = np.flatnonzero(ok)[:need]
        stores.append(store.select(keep)), cleans.append(clean.select(keep))
        have += len(keep)
        if have == count:
            break
    else:
        raise QuestionRequestError(f"could not draw {count} pairs for this recipe at digit {k} of {n}: {recipe}")
    store, clean = QuestionBatch.concat(stores), QuestionBatch.concat(cleans)
    if recipe.mirror:
        half = np.arange(count) >= count // 2
        swap = lambda a, b: np.where(half, b, a)  # noqa: E731
        store, clean = (
            QuestionBatch(n, swap(store.a, clean.a), swap(store.op, clean.op), swap(store.b, clean.b)),
            QuestionBatch(n, swap(clean.a, store.a), swap(clean.op, store.op), swap(clean.b, store.b)),
        )
    return store, clean
