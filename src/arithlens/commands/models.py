"""`arithlens models`: list the models shipped in the package."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def models(as_json: bool = typer.Option(False, "--json", help="One JSON object per model, one per line.")) -> None:
        """List the models shipped in the package (the default one is marked *)."""
        from arithlens.api import default_model_name, models as shipped

        rows = [m.summary() for m in shipped()]
        default = default_model_name() if rows else None
        for row in rows:
            row["default"] = row["name"] == default
        if as_json:
            for row in rows:
                typer.echo(json.dumps(row))
            return
        if not rows:
            typer.echo("no models are shipped; pass --model PATH to commands that take a model")
            return
        width = max(len(r["name"]) for r in rows) + 2
        typer.echo(f"  {'name':<{width}}{'op':<5}{'layers':>7}{'heads':>6}{'d_model':>8}{'size':>10}  accuracy")
        for r in rows:
            mark = "*" if r["default"] else " "
            typer.echo(f"{mark} {r['name']:<{width}}{r['op']:<5}{r['layers']:>7}{r['heads']:>6}{r['d_model']:>8}"
                       f"{_size(r['size_bytes']):>10}  {r['accuracy'] or '-'}")


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
