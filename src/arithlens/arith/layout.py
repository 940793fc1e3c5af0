"""Where each token sits: D5..D0 OPR D'5..D'0 = A7..A0 for 6 digits, and where each answer digit is computed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from arithlens.errors import QuestionRequestError

MIN_DIGITS, MAX_DIGITS = 1, 15


def check_n_digits(n_digits: int) -> int:
    if not isinstance(n_digits, int) or not MIN_DIGITS <= n_digits <= MAX_DIGITS:
        raise QuestionRequestError(f"n_digits {n_digits!r} is outside {MIN_DIGITS}..{MAX_DIGITS}")
    return n_digits


@dataclass(frozen=True)
class Layout:
    """Token positions for `n_digits`-digit questions (next-token prediction, no BOS)."""

    n_digits: int

    def __post_init__(self) -> None:
        check_n_digits(self.n_digits)

    @property
    def n_question(self) -> int:
        return 2 * self.n_digits + 2

    @property
    def n_answer(self) -> int:
        """Sign plus n+1 magnitude digits."""
        return self.n_digits + 2

    @property
    def n_ctx(self) -> int:
        return 3 * self.n_digits + 4

    @property
    def opr_pos(self) -> int:
        return self.n_digits

    @property
    def eq_pos(self) -> int:
        return 2 * self.n_digits + 1

    @property
    def sign_pos(self) -> int:
        return 2 * self.n_digits + 2

    def d_pos(self, k: int) -> int:
        """Position of digit k (0 = units) of the first operand."""
        return self.n_digits - 1 - k

    def dp_pos(self, k: int) -> int:
        """Position of digit k of the second operand (D'k)."""
        return 2 * self.n_digits - k

    def a_pos(self, k: int) -> int:
        """Position of answer token Ak (A(n+1) is the sign)."""
        return self.n_ctx - 1 - k

    def computed_at(self, k: int) -> int:
        """Position whose logits predict Ak: A2 is computed at P18 for 6 digits."""
        return self.n_ctx - 2 - k

    @property
    def answer_logit_positions(self) -> range:
        """Positions whose logits predict the n+2 answer tokens, sign first."""
        return range(self.n_question - 1, self.n_ctx - 1)

    @cached_property
    def meanings(self) -> tuple[str, ...]:
        n = self.n_digits
        return (
            tuple(f"D{k}" for k in reversed(range(n)))
            + ("OPR",)
            + tuple(f"D'{k}" for k in reversed(range(n)))
            + ("=",)
            + tuple(f"A{k}" for k in reversed(range(n + 2)))
        )

    def meaning(self, pos: int) -> str:
        return self.meanings[pos]

    def answer_digit_at(self, pos: int) -> int | None:
        """Inverse of `computed_at`: which answer digit the logits at `pos` predict (None if none)."""
        k = self.n_ctx - 2 - pos
        return k if 0 <= k <= self.n_digits + 1 else None
