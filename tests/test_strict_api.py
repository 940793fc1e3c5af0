"""The Python API is as strict as the command line (issue 25): every bad argument a notebook user can pass is a
one-line ArithLensError that is also the matching builtin, raised before any work."""

import json
import math
from pathlib import Path

import pytest
import torch

import arithlens as al
from arithlens.errors import ArgumentTypeError, ArithLensError, ConflictError, NotFoundError, ParseError
from arithlens.model import HookedTransformer, ModelSpec, save_checkpoint
from arithlens.results import NodeStudy, UsefulNodes

STUDY = Path(__file__).parent / "data" / "cli_reference" / "P18L0H3_study.json"
ADD = ModelSpec.parse("add_d6_l1_h2_t1K_s372001", d_model=16, d_head=8, d_mlp=16)
MIX = ModelSpec.parse("mix_d6_l1_h2_t1K_s372001", d_model=16, d_head=8, d_mlp=16)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


@pytest.fixture(scope="module")
def adder():
    return HookedTransformer(ADD, seed=1).eval()


@pytest.fixture(scope="module")
def adder_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("adder") / "run"
    save_checkpoint(HookedTransformer(ADD, seed=1), ADD, out)
    return out


# ---------------------------------------------------------------------------------------------------
# Errors are ArithLensErrors and the builtin a Python user catches


def test_error_classes_are_also_the_matching_builtins():
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ArithLensError)
    assert issubclass(NotFoundError, FileNotFoundError) and issubclass(NotFoundError, ArithLensError)
    assert issubclass(ArithLensError, ValueError)
    assert str(NotFoundError("checkpoint 'x' does not exist")) == "checkpoint 'x' does not exist"


# ---------------------------------------------------------------------------------------------------
# load_model: the device goes through the CLI's resolver


def test_load_model_refuses_an_unknown_device(adder_dir):
    with pytest.raises(ArithLensError) as exc:
        al.load_model(adder_dir, device="tpu")
    assert one_line(exc) == "device must be auto, cpu or cuda, not 'tpu'"


def test_load_model_refuses_cuda_without_cuda(adder_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ArithLensError) as exc:
        al.load_model(adder_dir, device="cuda")
    assert one_line(exc) == "device cuda: no CUDA device is available on this machine"


def test_load_model_device_auto_picks_what_the_cli_picks(adder_dir, monkeypatch):
    from arithlens.api import load_checkpoint
    from arithlens.commands._common import Device
    from arithlens.model import device as device_module

    seen = []
    real = device_module.pick_device
    monkeypatch.setattr(device_module, "pick_device", lambda choice, flag="--device": seen.append(flag) or real(
        choice, flag))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = al.load_model(adder_dir, device="auto")
    cli_model = load_checkpoint(adder_dir, Device.auto).model  # what every command's --device auto loads
    assert str(model.embed.W_E.device) == str(cli_model.embed.W_E.device) == "cpu"
    assert seen == ["device", "--device"]  # one resolver: the API's call, then the CLI's


def test_load_model_of_a_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        al.load_model(tmp_path / "nothing")
    assert isinstance(exc.value, ArithLensError) and "nothing" in one_line(exc)


# ---------------------------------------------------------------------------------------------------
# questions


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 5, "seed": -1}, "seed must be at least 0, not -1"),
    ({"count": True}, "count must be an integer, not bool True"),
    ({"count": 2.5}, "count must be an integer, not float 2.5"),
    ({"count": -3}, "count must be at least 0, not -3"),
    ({"count": 5, "qtypes": {"add": math.nan}}, "qtypes: the weight of 'add' must be a finite number >= 0, not nan"),
    ({"count": 5, "qtypes": {"add": -1}}, "qtypes: the weight of 'add' must be a finite number >= 0, not -1"),
    ({"count": 5, "qtypes": {"add": 0}}, "qtypes: the weights are all zero: give at least one above 0"),
    ({"count": 5, "qtypes": {"div": 1}}, "qtypes: unknown name 'div' (known: add, sub, neg, mul)"),
    ({"count": 5, "op": "div"}, "op must be one of add, sub, mix, mul, not 'div'"),
    ({"count": 5, "n_digits": 0}, "n_digits must be between 1 and 15, not 0"),
])
def test_questions_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ArithLensError) as exc:
        al.questions(**kwargs)
    assert one_line(exc) == message


def test_questions_true_is_a_type_error_not_one_question():
    with pytest.raises(TypeError):
        al.questions(True)


def test_questions_accepts_good_arguments():
    batch = al.questions(4, seed=3, qtypes={"neg": 1})
    assert len(batch) == 4 and {int(q) for q in batch.qtype} == {2}


# ---------------------------------------------------------------------------------------------------
# study_node and pca


def test_study_node_with_a_number_is_a_type_error(adder):
    with pytest.raises(ArgumentTypeError) as exc:
        al.study_node(adder, 5)
    assert one_line(exc) == "a node name must be a string such as 'P18L0H0', not int 5"


@pytest.mark.parametrize("kwargs, message", [
    ({"permutations": 10**14}, "permutations must be between 0 and 100000, not 100000000000000"),
    ({"digit": 6}, "digit must be between 0 and 5, not 6"),
    ({"seed": -1}, "seed must be at least 0, not -1"),
])
def test_study_node_bounds_are_checked_before_work(adder, kwargs, message):
    with pytest.raises(ArithLensError) as exc:
        al.study_node(adder, "P18L0H0", **kwargs)
    assert one_line(exc) == message


def test_pca_on_an_empty_batch_is_an_error(adder):
    batch = al.questions(0, op="add")
    with pytest.raises(ArithLensError) as exc:
        al.pca(adder, "P18L0H0", batch)
    assert one_line(exc) == "the question batch is empty: give at least one question"


def test_pca_on_a_batch_of_other_digits_is_an_error(adder):
    with pytest.raises(ArithLensError) as exc:
        al.pca(adder, "P18L0H0", al.questions(20, op="add", n_digits=3))
    assert one_line(exc).startswith("the batch has 3-digit questions but add_d6_l1_h2_t1K_s372001 takes 6-digit")


def test_pca_of_an_adder_on_a_mixed_batch_is_an_error(adder):
    with pytest.raises(ArithLensError) as exc:
        al.pca(adder, "P18L0H0", al.questions(30, op="mix", seed=1))
    assert "SUB, NEG questions, which add_d6_l1_h2_t1K_s372001 was not trained on" in one_line(exc)


@pytest.mark.parametrize("components", [0, 1, -2])
def test_pca_components_below_two_are_refused_not_replaced(adder, components):
    with pytest.raises(ArithLensError) as exc:
        al.pca(adder, "P18L0H0", al.questions(20, op="add"), components=components)
    assert one_line(exc) == f"components must be between 2 and 16, not {components}"


def test_pca_with_good_arguments_gives_the_components_asked(adder):
    result = al.pca(adder, "P18L0H0", al.questions(20, op="add"), components=3)
    assert len(result.evr) == 3 and result.n == 20


# ---------------------------------------------------------------------------------------------------
# from_json validates what it reads


def study_record(**changes):
    data = json.loads(STUDY.read_text())
    data.update(changes)
    return data


@pytest.mark.parametrize("changes, message", [
    ({"node": "P99L0H0"}, "unknown node 'P99L0H0': position 99 is outside 0..21"),
    ({"layer": math.nan}, "NodeStudy: 'layer' must be an integer >= 0, not nan"),
    ({"layer": "zero"}, "NodeStudy: 'layer' must be an integer >= 0, not 'zero'"),
    ({"head": 2}, "NodeStudy: 'head' is 2 but the node P18L0H3 says 3"),
    ({"position": 17}, "NodeStudy: 'position' is 17 but the node P18L0H3 says 18"),
    ({"node": "P18L0H３"}, "unknown node 'P18L0H３': expected a name like P18L0H0, P18L0MLP or P18L0M123"),
])
def test_node_study_from_json_refuses_bad_records(changes, message):
    with pytest.raises(ArithLensError) as exc:
        NodeStudy.from_json(study_record(**changes))
    assert one_line(exc) == message


def test_node_study_from_json_reads_a_good_record():
    study = NodeStudy.from_json(STUDY)
    assert (study.node, study.position, study.layer, study.head) == ("P18L0H3", 18, 0, 3)


def test_useful_nodes_from_a_study_file_is_a_one_line_error():
    with pytest.raises(ArithLensError) as exc:
        UsefulNodes.from_json(STUDY)
    assert "UsefulNodes: the JSON object needs a 'model' name and a 'nodes' list" in one_line(exc)


def test_faithfulness_of_another_models_node_set_is_a_conflict(adder):
    nodes = UsefulNodes.from_dict({"model": "mix_d6_l3_h4_t10K_s372001", "nodes": [{"name": "P18L0H0", "tags": []}]})
    with pytest.raises(ConflictError) as exc:
        al.faithfulness(adder, nodes, questions=10)
    assert "was written for mix_d6_l3_h4_t10K_s372001, but the model is add_d6_l1_h2_t1K_s372001" in one_line(exc)


# ---------------------------------------------------------------------------------------------------
# Node names are ASCII, as written


@pytest.mark.parametrize("text", ["P١٨L0H0", "P１８L0H0", " P18L0H0", "P18L0H0 ", "P18L0H0\n"])
def test_node_names_are_ascii_without_surrounding_space(text):
    from arithlens.analysis.nodes import Node

    with pytest.raises(ParseError) as exc:
        Node.parse(text)
    assert one_line(exc).startswith(f"unknown node {text!r}")


# ---------------------------------------------------------------------------------------------------
# The other analyses check their arguments before any work


@pytest.mark.parametrize("call, message", [
    (lambda m: al.search(m, pairs=0), "pairs must be at least 1, not 0"),
    (lambda m: al.circuit(m, target=2), "target must be an exact accuracy in (0, 1], not 2"),
    (lambda m: al.analyze(m, questions=-1), "questions must be at least 1, not -1"),
    (lambda m: al.useful_nodes(m, seed=-5), "seed must be at least 0, not -5"),
    (lambda m: al.faithfulness(m, ["P18L0H0"], ablation="zero"), "ablation must be one of mean, resample, not 'zero'"),
    (lambda m: al.faithfulness(m, "P18L0H0"), "nodes must be a UsefulNodes result or a list of node names, not "
                                              "'P18L0H0'"),
    (lambda m: al.search("adder"), "expected a model from arithlens.load_model(), not str"),
])
def test_analyses_refuse_bad_arguments_in_one_line(adder, call, message):
    with pytest.raises(ArithLensError) as exc:
        call(adder)
    assert one_line(exc) == message


def test_saving_a_result_over_a_symlink_is_refused(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("keep\n")
    (tmp_path / "link.json").symlink_to(real)
    with pytest.raises(ArithLensError) as exc:
        NodeStudy.from_json(STUDY).save(tmp_path / "link.json")
    assert "is a symbolic link" in one_line(exc)
    assert real.read_text() == "keep\n" and (tmp_path / "link.json").is_symlink()
