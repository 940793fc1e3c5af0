"""Progress without a terminal: plain, throttled lines on stderr (stage, done/total, elapsed, time left)."""

from __future__ import annotations

import io
import re

from helpers import arithlens
from planted import BACKUP_SPEC, backup_heads_model

from arithlens.commands._common import Progress
from arithlens.model import save_checkpoint


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_are_throttled_to_every_tenth_or_ten_seconds():
    stream, clock = io.StringIO(), Clock()
    with Progress(False, stream=stream, interactive=False, clock=clock) as bar:
        for done in range(0, 101):
            clock.now = done * 0.5  # 0.5 s a step: 10% (10 steps) comes before 10 s (20 steps)
            bar("useful", done, 100, "sweep")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "useful: 0/100 (0%), elapsed 0 s, sweep"
    assert lines[1] == "useful: 10/100 (10%), elapsed 5 s, about 45 s left, sweep"
    assert lines[-1] == "useful: 100/100 (100%), elapsed 50 s, done, sweep"
    assert len(lines) == 11  # the start, then every 10%


def test_slow_stage_without_total_prints_every_ten_seconds_and_stages_are_separate():
    stream, clock = io.StringIO(), Clock()
    bar = Progress(False, stream=stream, interactive=False, clock=clock)
    for step in range(31):
        clock.now = float(step)
        bar.advance("search", 1)
        if step == 5:
            bar("studies", 1, 4)
    assert stream.getvalue().splitlines() == [
        "search: 1, elapsed 0 s", "studies: 1/4 (25%), elapsed 0 s",
        "search: 11, elapsed 10 s", "search: 21, elapsed 20 s", "search: 31, elapsed 30 s"]


def test_quiet_prints_nothing():
    stream = io.StringIO()
    bar = Progress(True, stream=stream, interactive=False)
    bar("x", 1, 2)
    bar.advance("x", 1, 2)
    assert stream.getvalue() == ""


def test_a_command_with_redirected_stderr_prints_plain_progress_lines(tmp_path):
    """`arithlens faithfulness --nodes useful` on a tiny planted checkpoint, its stderr a pipe: the useful sweep's
    stages as plain lines (the planted model has 7 positions to sweep), no bar or escape characters."""
    save_checkpoint(backup_heads_model(), BACKUP_SPEC, tmp_path / "planted")
    proc = arithlens("faithfulness", "--model", str(tmp_path / "planted"), "--nodes", "useful", "--questions", "200")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(re.match(r"^[\w-]+: [\d,]+/[\d,]+ \(\d+%\), elapsed \d+ s", line) for line in lines), lines
    assert re.search(r"^positions: 1/7 \(14%\), elapsed \d+ s$", proc.stderr, re.M)
    assert re.search(r"^positions: 7/7 \(100%\), elapsed \d+ s, done$", proc.stderr, re.M)
    assert "\x1b" not in proc.stderr and "━" not in proc.stderr
