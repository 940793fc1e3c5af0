"""Question types: ADD, SUB (a >= b), NEG (a < b) and MUL; the one enum every layer names them by."""

from __future__ import annotations

from enum import IntEnum

from arithlens.errors import QuestionRequestError


class QType(IntEnum):
    """ADD (a+b), SUB (a-b with a >= b, answer sign +), NEG (a-b with a < b, sign -), MUL (a*b)."""

    ADD = 0
    SUB = 1
    NEG = 2
    MUL = 3

    @classmethod
    def parse(cls, text: str) -> QType:
        try:
            return cls[text.upper()]
        except KeyError:
            raise QuestionRequestError(f"unknown qtype {text!r}; expected add, sub, neg or mul") from None


__all__ = ["QType"]
