"""The `arithlens` command line: one flag spelling across commands, one-line errors, exit code 2."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from typing import Optional

import typer

from arithlens.errors import ArithLensError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Mechanistic interpretability of transformers that do integer arithmetic.",
)


@app.callback()
def _root() -> None:
    """arithlens: generate questions, train and evaluate models, find and study the nodes they use."""


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


def fail(message: str) -> None:
    """Print a one-line error and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def questions(
    digits: int = typer.Option(6, "--digits", help="Digits per operand (1..15)."),
    op: Op = typer.Option(Op.mix, "--op", help="add, sub (SUB and NEG), mix (add+sub) or mul."),
    count: int = typer.Option(10, "--count", help="Number of questions (per class for tricase)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed prints the same questions."),
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
    """
    import numpy as np

    from arithlens.arith import curated as curated_mod
    from arithlens.arith import enriched, tricase, tricase_set, uniform
    from arithlens.arith.questions import QType
    from arithlens.errors import QuestionRequestError

    rng = np.random.default_rng(seed)
    if kind == Kind.uniform:
        batch = uniform(digits, count, rng, op=op.value)
    elif kind == Kind.enriched:
        batch = enriched(digits, count, rng, op=op.value if op != Op.mix else None)
    elif kind == Kind.curated:
        batch = curated_mod.curated(digits).batch
        keep = {"add": [QType.ADD], "sub": [QType.SUB, QType.NEG], "mix": [QType.ADD, QType.SUB, QType.NEG],
                "mul": []}[op.value]
        batch = batch.select(np.isin(batch.qtype, keep))
        if count and count < len(batch):
            batch = batch.select(slice(0, count))
    else:
        if digit is None:
            raise QuestionRequestError("--kind tricase needs --digit")
        default_qtype = {"add": "add", "sub": "sub"}.get(op.value)
        qt = qtype.value if qtype is not None else default_qtype
        if qt is None:
            raise QuestionRequestError(f"--kind tricase needs --op add or --op sub, not {op.value}")
        if (qt == "add") != (op.value == "add") and qtype is not None and op.value in ("add", "sub"):
            raise QuestionRequestError(f"--qtype {qt} does not go with --op {op.value}")
        if case is None:
            batch = tricase_set(digits, digit, qt, count, rng, carry_in=carry_in, high=high)
        else:
            batch = tricase(digits, digit, qt, case, count, rng, carry_in=carry_in, high=high)
    _print_batch(batch, as_json)


def _print_batch(batch, as_json: bool) -> None:
    out = sys.stdout
    if as_json:
        for i in range(len(batch)):
            out.write(json.dumps(batch.row_dict(i), separators=(",", ":")) + "\n")
        return
    has_case = "tricase_case" in batch.labels
    header = f"{'question':<{2 * batch.n_digits + 3}} {'answer':<{batch.n_digits + 3}} {'qtype':<5} {'class':<5}"
    if has_case:
        header += " case carry_in carry_out"
    out.write(header + "\n")
    for i in range(len(batch)):
        line = (f"{batch.question_string(i):<{2 * batch.n_digits + 3}} {batch.answer_string(i):<{batch.n_digits + 3}} "
                f"{batch.row_dict(i)['qtype']:<5} {batch.complexity[i]:<5}")
        if has_case:
            line += (f" T{batch.labels['tricase_case'][i]:<3} {batch.labels['carry_in'][i]:<8} "
                     f"{batch.labels['carry_out'][i]}")
        out.write(line + "\n")


def _register_commands() -> None:
    import importlib
    import pkgutil

    import arithlens.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):  # helpers such as _options
            importlib.import_module(f"arithlens.commands.{info.name}").register(app)


_register_commands()


def main() -> None:
    """Entry point: run the app, turning arithlens errors into `error: ...` and exit code 2."""
    # OpenMP threads that spin while waiting fight other busy torch processes for the cores: measured with three
    # 2-thread `analyze` sweeps at once, 54-76 s each by default, 15-17 s with a short spin (10 s alone either
    # way). Set before torch loads (every command imports it lazily); a value the user set is kept.
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    try:
        app()
    except ArithLensError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
