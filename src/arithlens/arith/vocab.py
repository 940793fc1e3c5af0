"""Vocabulary shared with the reference checkpoints: digits 0-9 are ids 0-9, then + - = * and \\."""

from __future__ import annotations

from collections.abc import Iterable

PLUS, MINUS, EQUALS, MULT, DIV = 10, 11, 12, 13, 14
D_VOCAB = 15
CHARS = "0123456789+-=*\\"
_CHAR_TO_TOKEN = {c: i for i, c in enumerate(CHARS)}
OPERATOR_TOKENS = (PLUS, MINUS, MULT)


def tokens_to_string(tokens: Iterable[int]) -> str:
    """`[12, 4, 0, 7]` -> `"=407"`."""
    return "".join(CHARS[int(t)] for t in tokens)


def string_to_tokens(text: str) -> list[int]:
    """`"=407"` -> `[12, 4, 0, 7]`; an unknown character is an error naming it."""
    from arithlens.errors import ParseError

    try:
        return [_CHAR_TO_TOKEN[c] for c in text]
    except KeyError as exc:
        raise ParseError(f"unknown character {exc.args[0]!r} in {text!r}; allowed: {CHARS}") from None
