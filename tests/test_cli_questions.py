"""`arithlens questions`: JSON lines with right answers, determinism, one-line errors with exit code 2."""

import json

import pytest
from helpers import arithlens


def test_json_lines_have_right_answers_and_repeat_exactly():
    args = ("questions", "--digits", "6", "--op", "mix", "--count", "5", "--seed", "1", "--json")
    first, second = arithlens(*args), arithlens(*args)
    assert first.returncode == 0 and first.stdout == second.stdout
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(rows) == 5
    for row in rows:
        a, op, b = int(row["question"][:6]), row["question"][6], int(row["question"][7:13])
        value = a + b if op == "+" else a - b
        assert row["answer"] == ("-" if value < 0 else "+") + str(abs(value)).zfill(7)
        assert row["qtype"] in ("ADD", "SUB", "NEG") and row["complexity"] and row["features"]


def test_tricase_table_shows_labels():
    out = arithlens("questions", "--kind", "tricase", "--op", "sub", "--qtype", "neg", "--digit", "1",
                  "--case", "T8", "--count", "4", "--seed", "3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["question", "answer", "qtype", "class"] and len(lines) == 5
    assert all(" NEG " in line and " T8 " in line for line in lines[1:])


@pytest.mark.parametrize(
    "args, message",
    [
        (("questions", "--digits", "16"), "error: n_digits 16 is outside 1..15"),
        (("questions", "--kind", "tricase", "--op", "sub", "--qtype", "neg", "--digit", "0", "--case", "T9",
          "--high", "zero"), "error: no question exists for NEG T9 at digit 0"),
        (("questions", "--kind", "tricase", "--op", "add"), "error: --kind tricase needs --digit"),
    ],
)
def test_bad_requests_exit_2_with_one_line(args, message):
    out = arithlens(*args)
    assert out.returncode == 2
    assert out.stderr.startswith(message) and out.stderr.count("\n") == 1
    assert out.stdout == ""
