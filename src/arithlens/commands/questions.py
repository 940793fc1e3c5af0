"""`arithlens questions`: labelled questions as a table or JSON lines, generated and printed in chunks so that
memory stays flat whatever `--count` is."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Optional

import typer

from arithlens.commands._common import count_option, seed_option

# Questions generated at a time; a count up to this is one draw (the same questions as one big batch).
CHUNK = 50_000  # = arithlens.api.question_sets.CHUNK, kept here so that a test can shrink it


class Op(str, Enum):
    add = "add"
    sub = "sub"
    mix = "mix"
    mul = "mul"


class Kind(str, Enum):
    uniform = "uniform"
    enriched = "enriched"
    curated = "curated"
    tricase = "tricase"


class QTypeOpt(str, Enum):
    add = "add"
    sub = "sub"
    neg = "neg"


def register(app: typer.Typer) -> None:
    @app.command()
    def questions(
        digits: int = typer.Option(6, "--digits", help="Digits per operand (1..15)."),
        op: Op = typer.Option(Op.mix, "--op", help="add, sub (SUB and NEG), mix (add+sub) or mul."),
        count: int = count_option(10, "--count", "Number of questions (per class for tricase).", low=0),
        seed: int = seed_option(0, "Random seed; the same seed prints the same questions."),
        kind: Kind = typer.Option(Kind.uniform, "--kind", help="uniform, enriched, curated or tricase."),
        digit: Optional[int] = typer.Option(None, "--digit", help="Tricase test digit (0 = units)."),
        case: Optional[str] = typer.Option(None, "--case", help="Tricase class T8, T9 or T10 (all three if omitted)."),
        qtype: Optional[QTypeOpt] = typer.Option(None, "--qtype", help="add, sub or neg (tricase; default from --op)."),
        high: str = typer.Option("decide", "--high", help="Tricase digits above the test digit: decide or zero."),
        carry_in: str = typer.Option("any", "--carry-in", help="Tricase carry/borrow into the test digit: any, never, always."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    ) -> None:
        """Generate labelled questions.

        Examples: `arithlens questions --op mix --count 5 --seed 1 --json`;
        `arithlens questions --kind tricase --op sub --qtype neg --digit 1 --case T8 --count 3`.
        Questions are drawn in chunks of 50,000 from one seeded generator, so memory stays flat.
        """
        from arithlens.api import question_stream
        from arithlens.errors import QuestionRequestError

        if kind == Kind.tricase:
            if digit is None:
                raise QuestionRequestError("--kind tricase needs --digit")
            default_qtype = {"add": "add", "sub": "sub"}.get(op.value)
            qt = qtype.value if qtype is not None else default_qtype
            if qt is None:
                raise QuestionRequestError(f"--kind tricase needs --op add or --op sub, not {op.value}")
            if (qt == "add") != (op.value == "add") and qtype is not None and op.value in ("add", "sub"):
                raise QuestionRequestError(f"--qtype {qt} does not go with --op {op.value}")
        else:
            given = [flag for flag, value, default in (("--digit", digit, None), ("--case", case, None),
                                                       ("--qtype", qtype, None), ("--high", high, "decide"),
                                                       ("--carry-in", carry_in, "any")) if value != default]
            if given:
                raise QuestionRequestError(f"{given[0]} applies to --kind tricase only, not --kind {kind.value}: "
                                           f"drop it or add --kind tricase")
            qt = None
        first = True
        for batch in question_stream(digits, op.value, count, seed, kind.value, digit=digit, case=case, qtype=qt,
                                     high=high, carry_in=carry_in, chunk=CHUNK):
            _print_batch(batch, as_json, header=first)
            first = False


def _print_batch(batch, as_json: bool, header: bool = True) -> None:
    out = sys.stdout
    if as_json:
        out.write("".join(json.dumps(batch.row_dict(i), separators=(",", ":")) + "\n" for i in range(len(batch))))
        return
    has_case = "tricase_case" in batch.labels
    if header:
        line = f"{'question':<{2 * batch.n_digits + 3}} {'answer':<{batch.n_digits + 3}} {'qtype':<5} {'class':<5}"
        out.write(line + (" case carry_in carry_out" if has_case else "") + "\n")
    for i in range(len(batch)):
        line = (f"{batch.question_string(i):<{2 * batch.n_digits + 3}} {batch.answer_string(i):<{batch.n_digits + 3}} "
                f"{batch.row_dict(i)['qtype']:<5} {batch.complexity[i]:<5}")
        if has_case:
            line += (f" T{batch.labels['tricase_case'][i]:<3} {batch.labels['carry_in'][i]:<8} "
                     f"{batch.labels['carry_out'][i]}")
        out.write(line + "\n")
