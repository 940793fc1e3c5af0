"""Property tests (hypothesis) of the promise of issue 25: random bad inputs to the API and the CLI give an
ArithLensError (CLI: exit 2 and one `error:` line on stderr, nothing on stdout, no traceback), and no file is
created, changed or removed anywhere under the working folder. Derandomized, so CI runs the same inputs."""

import contextlib
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arithlens as al
from arithlens.analysis.nodes import Node
from arithlens.cli import main
from arithlens.errors import ArithLensError
from arithlens.model import HookedTransformer, ModelSpec, save_checkpoint
from arithlens.results import NodeStudy, UsefulNodes

STRICT = settings(derandomize=True, deadline=None, database=None, max_examples=100,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SPEC = ModelSpec.parse("add_d6_l1_h2_t1K_s372001", d_model=16, d_head=8, d_mlp=16)
STUDY = json.loads((Path(__file__).parent / "data" / "cli_reference" / "P18L0H3_study.json").read_text())
VALID_NODE = re.compile(r"P[0-9]+L[0-9]+(H[0-9]+|MLP|M[0-9]+)")


@pytest.fixture(scope="module")
def world():
    """A folder with a tiny model, a FIFO and a symlink: the working folder of every CLI run."""
    root = Path(tempfile.mkdtemp(prefix="al25p-", dir="/tmp"))
    save_checkpoint(HookedTransformer(SPEC, seed=1), SPEC, root / "adder")
    os.mkfifo(root / "fifo")
    (root / "real.json").write_text("keep\n")
    os.symlink(root / "real.json", root / "link")
    (root / "nan.json").write_text('{"steps": NaN}')
    (root / "realdir").mkdir()
    os.symlink(root / "realdir", root / "dirlink")
    old = os.getcwd()
    os.chdir(root)
    yield root
    os.chdir(old)
    import shutil

    shutil.rmtree(root)


@pytest.fixture(scope="module")
def no_work():
    """Whatever slips past the checks fails loudly instead of training or analysing for minutes."""
    import importlib

    def started(*args, **kwargs):
        raise AssertionError("work started")

    with pytest.MonkeyPatch.context() as m:
        for target in ("arithlens.model.train:train", "arithlens.executor:executor",
                       "arithlens.analysis.search:search_model", "arithlens.analysis.node_study:study_node",
                       "arithlens.model.evaluate:evaluate_suite",
                       "arithlens.analysis.faithfulness:measure_faithfulness", "arithlens.analysis.useful:find_useful"):
            module, name = target.split(":")
            m.setattr(importlib.import_module(module), name, started)
        yield


def snapshot(root: Path) -> dict:
    """Every entry under `root` with its kind, size and modification time."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(folder, name)
            st_ = os.lstat(p)
            seen[os.path.relpath(p, root)] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return seen


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


def assert_refused(world: Path, argv: list[str]) -> None:
    before = snapshot(world)
    code, out, err = cli(argv)
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, err)
    assert out == "" and len(lines) == 1 and lines[0].startswith("error: "), (argv, out, err)
    assert "Traceback" not in err and "work started" not in err, (argv, err)
    assert snapshot(world) == before, argv


# ---------------------------------------------------------------------------------------------------
# Strategies: values that no option accepts

negative = st.integers(max_value=-1).map(str)
not_a_number = st.text(alphabet="abcxyz_.-+ ", min_size=1, max_size=6).filter(
    lambda t: not re.fullmatch(r"\s*[+-]?[0-9]+\s*", t))
non_finite = st.sampled_from(["nan", "inf", "-inf", "NaN"])
non_ascii_node = st.text(min_size=1, max_size=10).filter(lambda t: not VALID_NODE.fullmatch(t) and
                                                         not t.startswith("-"))

bad_argv = st.one_of(
    st.tuples(st.sampled_from(["--count", "--digits", "--seed"]), st.one_of(negative, not_a_number)).map(
        lambda o: ["questions", *o]),
    st.tuples(st.sampled_from(["--digits"]), st.integers(16, 10**6).map(str)).map(lambda o: ["questions", *o]),
    st.tuples(st.sampled_from(["--digit", "--case", "--qtype", "--high", "--carry-in"]),
              st.sampled_from(["1", "T8", "neg", "zero", "never"])).map(lambda o: ["questions", *o]),
    st.one_of(negative, st.integers(101, 10**12).map(str)).map(
        lambda v: ["search", "--model", "adder", "--out", "s", f"--min-attn={v}", "--quiet"]),
    non_ascii_node.map(lambda n: ["node", n, "--model", "adder", "--quiet"]),
    st.integers(100_001, 10**20).map(lambda v: ["node", "P18L0H0", "--model", "adder", "--permutations", str(v)]),
    st.one_of(negative, not_a_number, st.integers(10_000_001, 10**20).map(str)).map(
        lambda v: ["train", "--spec", "add_d3_l1_h1_t1K_s372001", "--out", "t", f"--steps={v}"]),
    st.one_of(non_finite, st.sampled_from(["0", "-1e-3"])).map(
        lambda v: ["train", "--spec", "add_d3_l1_h1_t1K_s372001", "--out", "t", f"--lr={v}"]),
    st.just(["train", "--spec", "add_d3_l1_h1_t1K_s372001", "--out", ""]),
    st.just(["train", "--spec", "add_d3_l1_h1_t1K_s372001", "--out", "t", "--config", "nan.json"]),
    st.sampled_from(["fifo", "link"]).map(lambda t: ["eval", "--model", "adder", "--out", t, "--quiet"]),
    st.sampled_from(["fifo", "link"]).map(lambda t: ["faithfulness", "--model", "adder", "--nodes", "useful",
                                                     "--out", t, "--quiet"]),
    st.one_of(st.integers(max_value=0).map(str), not_a_number).map(
        lambda v: ["atlas", "--models", "adder", "--out", "a", f"--threads={v}", "--quiet"]),
    st.just(["atlas", "--models", "adder", "--out", "a", "--config", "nan.json", "--quiet"]),
    st.tuples(st.integers(0, 999_999), st.integers(0, 999_999)).map(
        lambda s: ["sweep", "--spec", f"add_d6_l1_h1_t1K_s{s[0]:06d}", "--seeds", str(s[1]), "--out", "w"]),
    not_a_number.map(lambda v: ["faithfulness", "--model", "adder", "--nodes", "useful", "--ablation", v]),
    st.sampled_from([["atlas", "--models", "adder", "--quiet"], ["sweep", "--spec", "add_d6_l1_h1_t1K",
                                                                  "--seeds", "1", "--quiet"],
                     ["search", "--model", "adder", "--quiet"], ["node", "P18L0H0", "--model", "adder"]]).flatmap(
        lambda argv: st.sampled_from(["dirlink", "fifo"]).map(lambda t: [*argv, "--out", t])),
)


@settings(STRICT, max_examples=300)
@given(argv=bad_argv)
def test_cli_refuses_bad_input_in_one_line_touching_nothing(world, no_work, argv):
    assert_refused(world, argv)


# ---------------------------------------------------------------------------------------------------
# The API

json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
bad_count = st.one_of(st.integers(max_value=-1), st.booleans(), st.floats(), st.text(max_size=4), st.none())


@STRICT
@given(count=bad_count)
def test_api_questions_refuses_a_bad_count(world, count):
    before = snapshot(world)
    with pytest.raises(ArithLensError):
        al.questions(count)
    assert snapshot(world) == before


@STRICT
@given(seed=st.one_of(st.integers(max_value=-1), st.booleans(), st.floats(), st.text(max_size=3)),
       weights=st.dictionaries(st.sampled_from(["add", "sub", "neg", "mul", "div", ""]),
                               st.one_of(st.floats(max_value=-1e-9), st.just(math.nan), st.just(math.inf),
                                         st.text(max_size=3)), min_size=1, max_size=3))
def test_api_questions_refuses_bad_seeds_and_weights(seed, weights):
    with pytest.raises(ArithLensError):
        al.questions(5, seed=seed)
    with pytest.raises(ArithLensError):
        al.questions(5, qtypes=weights)


@STRICT
@given(device=st.one_of(st.text(max_size=8).filter(lambda t: t not in ("auto", "cpu")), st.integers(),
                        st.booleans()))
def test_api_load_model_refuses_bad_devices(world, device):
    with pytest.raises(ArithLensError):
        al.load_model(world / "adder", device=device)


any_digits = st.text(alphabet=st.characters(categories=["Nd"]), min_size=1, max_size=2)  # every script's digits
space = st.sampled_from(["", "", " ", "\t", "\n", "\u00a0"])
node_like = st.builds(lambda pre, p, l, h, post: f"{pre}P{p}L{l}H{h}{post}", space, any_digits, any_digits,
                      any_digits, space)


@STRICT
@given(text=st.one_of(st.text(max_size=12), node_like, st.integers(), st.none()))
def test_node_names_parse_only_as_written_in_ascii(text):
    try:
        node = Node.parse(text)
    except ArithLensError:
        return
    assert isinstance(text, str) and text.isascii() and text == text.strip()
    assert Node.parse(node.name) == node and re.sub(r"(?<=[PLHM])0+(?=[0-9])", "", text) == node.name


@pytest.fixture(scope="module")
def adder():
    return HookedTransformer(SPEC, seed=1).eval()


@STRICT
@given(components=st.one_of(st.integers(max_value=1), st.integers(min_value=17), st.booleans(), st.floats()))
def test_api_pca_refuses_bad_component_counts(adder, components):
    with pytest.raises(ArithLensError):
        al.pca(adder, "P18L0H0", al.questions(20, op="add"), components=components)


@STRICT
@given(key=st.sampled_from(["node", "position", "layer", "head", "kind", "model"]), value=json_value)
def test_node_study_from_json_refuses_or_agrees(key, value):
    record = {**STUDY, key: value}
    try:
        study = NodeStudy.from_json(record)
    except ArithLensError:
        return
    assert (study.node, study.position, study.layer, study.head) == ("P18L0H3", 18, 0, 3)


@STRICT
@given(data=json_value)
def test_useful_nodes_from_json_refuses_anything_malformed_in_one_line(data):
    try:
        result = UsefulNodes.from_dict(data)
    except ArithLensError as exc:
        assert "\n" not in str(exc)
        return
    assert all(Node.parse(n.name).name == n.name for n in result.nodes)
