"""The analysis follows the model's device: the same tags and verdicts on CUDA as on the CPU, numbers within
floating-point tolerance. Runs only where CUDA exists (skipped elsewhere)."""

import copy

import numpy as np
import pytest
import torch

from arithlens.analysis.node_study import StudyOptions, study_node
from arithlens.analysis.search import search_model
from arithlens.analysis.useful import find_useful, varied_questions
from arithlens.arith import uniform
from arithlens.interventions import Engine, compute_means, mean_ablate
from arithlens.model import load_checkpoint
from arithlens.model.evaluate import evaluate
from arithlens.model.zoo import resolve_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL = StudyOptions(questions=100, pairs=30, per_case=60, mixed=300, permutations=20)


@pytest.fixture(scope="module")
def models():
    cpu = load_checkpoint(resolve_model(None)).model.eval()
    return cpu, copy.deepcopy(cpu).to("cuda").eval()


def _tags(nodes) -> list[tuple[str, list[str]]]:
    return [(un.name, sorted(str(t) for t in un.tags)) for un in nodes]


def test_evaluate_gives_the_same_verdicts_on_cuda(models):
    cpu, gpu = models
    questions = uniform(6, 5000, np.random.default_rng(0))
    a = evaluate(cpu, questions, precision="fp32", per_question=True)
    b = evaluate(gpu, questions, precision="fp32", per_question=True)
    assert (a.row_wrong == b.row_wrong).all()
    np.testing.assert_allclose(a.row_margin, b.row_margin, atol=1e-3)


def test_engine_outcomes_match_and_stay_on_the_device(models):
    cpu, gpu = models
    questions = uniform(6, 400, np.random.default_rng(1))
    hook = "blocks.1.attn.hook_z"
    out = []
    for model in (cpu, gpu):
        means = compute_means(model, questions, [hook])
        eng = Engine(model, questions)
        assert eng.clean_logits.device.type == model.device.type
        out.append(eng.outcome([mean_ablate(means, hook, 18, head=2)]))
    assert (out[0].wrong == out[1].wrong).all()
    np.testing.assert_allclose(out[0].loss, out[1].loss, rtol=1e-3, atol=1e-5)


def test_useful_search_and_study_give_the_same_tags_and_verdicts_on_cuda(models):
    cpu, gpu = models
    questions = varied_questions(cpu.spec, count=64, seed=345621)
    useful = [find_useful(m, questions) for m in models]
    assert _tags(useful[0].nodes) == _tags(useful[1].nodes)
    assert useful[0].position_failures == useful[1].position_failures
    assert abs(useful[0].clean_loss - useful[1].clean_loss) <= 1e-4 + 1e-3 * useful[0].clean_loss
    search = [search_model(m, u.nodes, n_pairs=30, seed=0) for m, u in zip(models, useful)]
    assert _tags(search[0].nodes) == _tags(search[1].nodes)
    studies = [study_node(m, "P15L2H2", SMALL).data for m in models]
    a, b = studies
    assert a["tags"] == b["tags"] and a["study_digit"] == b["study_digit"]
    assert a["verdict"]["polysemantic"] == b["verdict"]["polysemantic"]
    assert a["verdict"]["roles"] == b["verdict"]["roles"]
    for op in a["qtypes"]:
        ra, rb = a["representation"][op], b["representation"][op]
        np.testing.assert_allclose(ra["evr"], rb["evr"], atol=1e-4)
        assert abs(ra["probe_carry"]["accuracy"] - rb["probe_carry"]["accuracy"]) <= 0.02
        na = a["necessity"]["per_qtype"][op]["all"]["resample"]["target_wrong"]["rate"]
        nb = b["necessity"]["per_qtype"][op]["all"]["resample"]["target_wrong"]["rate"]
        assert abs(na - nb) <= 0.01
