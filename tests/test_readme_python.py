"""The README's "Use from Python" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib.figure import Figure

README = Path(__file__).resolve().parent.parent / "README.md"


def python_example() -> str:
    section = README.read_text().split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section holds one Python example"
    return blocks[0]


def test_readme_example_is_ten_lines_and_runs_as_written(capsys):
    code = python_example()
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) <= 11  # the import and ten lines
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    printed = capsys.readouterr().out
    study = scope["study"]
    assert study.verdict.text in printed and study.node == "P18L0H3"
    assert isinstance(scope["fig"], Figure) and isinstance(scope["pca_fig"], Figure)
    assert scope["pca"].n == 300 and set(scope["pca"].qtype) == {"SUB"}
