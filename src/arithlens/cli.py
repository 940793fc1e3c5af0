"""The `arithlens` command line: commands are registered from `arithlens.commands`, and `main` is the one
error boundary: every failure becomes `error: <what and what to do>` on one stderr line with exit code 2
(a traceback only with `--debug` or ARITHLENS_DEBUG=1)."""

from __future__ import annotations

import os
import sys

import typer

from arithlens.errors import ArithLensError

DEBUG_ENV = "ARITHLENS_DEBUG"
_debug = {"on": False}

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs are rewrapped to the terminal, not broken at source lines
    help="Mechanistic interpretability of transformers that do integer arithmetic.",
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help=f"Show the traceback of an error (or set {DEBUG_ENV}=1)."),
) -> None:
    """arithlens: generate questions, train and evaluate models, find and study the nodes they use."""
    _debug["on"] = debug


def fail(message: str) -> None:
    """Print a one-line error and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _register_commands() -> None:
    import importlib
    import pkgutil

    import arithlens.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):  # helpers such as _common
            importlib.import_module(f"arithlens.commands.{info.name}").register(app)


_register_commands()


def _debugging(argv: list[str]) -> bool:
    return _debug["on"] or os.environ.get(DEBUG_ENV, "") not in ("", "0") or "--debug" in argv


def _click_exceptions(name: str) -> tuple[type, ...]:
    """click's exception class `name`, and typer's copy of it (typer >= 0.20 vendors click)."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def error_message(exc: BaseException) -> str:
    """The one line (without `error: `) that stands for `exc`: what went wrong and what to do."""
    from arithlens.io import describe_os_error

    if isinstance(exc, ArithLensError):
        text = str(exc)
    elif isinstance(exc, _click_exceptions("UsageError")):
        text = exc.format_message()
        if exc.ctx is not None:
            text += f" (see '{exc.ctx.command_path} --help')"
    elif isinstance(exc, OSError):
        text = f"cannot read or write a file: {describe_os_error(exc)}"
    elif isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's, a RuntimeError
        text = ("out of memory: ask for less (fewer questions, pairs or a smaller batch) or free memory; "
                f"{type(exc).__name__}: {_first_line(exc)}")
    else:
        text = (f"unexpected {type(exc).__name__}: {_first_line(exc)} (run again with --debug or {DEBUG_ENV}=1 "
                "for the traceback, and report it)")
    return " ".join(text.split())  # one line, whatever the message held


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app inside the error boundary; exit 0 on success, 2 on any error."""
    # OpenMP threads that spin while waiting fight other busy torch processes for the cores: measured with three
    # 2-thread `analyze` sweeps at once, 54-76 s each by default, 15-17 s with a short spin (10 s alone either
    # way). Set before torch loads (every command imports it lazily); a value the user set is kept.
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = app(args=args, prog_name="arithlens", standalone_mode=False)
    except _click_exceptions("NoArgsIsHelpError"):  # `arithlens` alone: typer printed the rich help already
        sys.exit(2)
    except _click_exceptions("Exit") as exc:
        sys.exit(exc.exit_code)
    except _click_exceptions("Abort"):
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if _debugging(args):
            import traceback

            traceback.print_exc()
        typer.echo(f"error: {error_message(exc)}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
