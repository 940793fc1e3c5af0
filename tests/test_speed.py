"""What makes `arithlens analyze` fast must not change what it finds: studies sharing clean runs give the JSON
they give alone, and figures drawn in worker processes are the files drawn here."""

from test_node_study import SMALL, pair_head_model

from dataclasses import replace

import numpy as np
import pytest

from arithlens.analysis.node_study import StudyCache, study_node
from arithlens.analysis.node_study.study import planned_digit
from arithlens.analysis.nodes import Node
from arithlens.arith import uniform
from arithlens.errors import ArithLensError
from arithlens.interventions import Engine, compute_means, mean_ablate
from arithlens.report.figures import figure_workers, run_jobs
from arithlens.report.node_figures import node_figure_jobs, write_node_figures


def test_studies_sharing_a_cache_give_the_json_they_give_alone():
    model = pair_head_model()
    cache = StudyCache()
    for node in ("P18L0H0", "P18L0H1", "P18L0H0"):
        assert study_node(model, node, SMALL, cache=cache).data == study_node(model, node, SMALL).data
    # Both heads sit in layer 0: the mixed set, the necessity engines and the patching runs are shared.
    assert cache.hits >= 5 and cache.misses >= 1


def test_a_tiny_cache_drops_old_runs_and_stays_exact():
    model = pair_head_model()
    cache = StudyCache(max_bytes=1)
    assert study_node(model, "P18L0H0", SMALL, cache=cache).data == study_node(model, "P18L0H0", SMALL).data
    assert len(cache._runs) == 1  # only the newest run is kept


def test_the_planned_digit_is_the_digit_the_study_picks():
    # analyze orders its studies by this digit (heads of a layer at one digit share runs), so it must be the study's.
    model = pair_head_model()
    cache = StudyCache()
    for node in ("P18L0H0", "P18L0H1", "P19L0H1"):
        picked = study_node(model, node, SMALL).data["study_digit"]
        assert planned_digit(model, Node.parse(node), SMALL, cache) == picked
    # Where the study refuses to pick one (a question token that attends to no digit pair), there is no plan.
    with pytest.raises(ArithLensError, match="give --digit"):
        study_node(model, "P12L0H0", SMALL)
    assert planned_digit(model, Node.parse("P12L0H0"), SMALL, cache) is None
    assert planned_digit(model, Node.parse("P18L0H0"), replace(SMALL, digit=4)) == 4
    assert planned_digit(model, Node.parse("P18L0H0"), SMALL) == 1  # head 0 reads (D1, D'1)


def test_an_engine_with_its_scratch_released_gives_the_same_outcomes():
    model = pair_head_model()
    questions = uniform(6, 50, np.random.default_rng(0))
    means = compute_means(model, questions, ["blocks.0.attn.hook_z"])
    engine = Engine(model, questions)
    ablation = [mean_ablate(means, "blocks.0.attn.hook_z", 18, head=0)]
    before = engine.outcome(ablation)
    engine.release_scratch()
    after = engine.outcome(ablation)
    assert np.array_equal(before.loss, after.loss) and np.array_equal(before.wrong, after.wrong)
    assert not np.array_equal(before.loss, engine.clean.loss)  # the ablation did something


def test_figures_from_worker_processes_are_the_files_drawn_here(tmp_path):
    data = study_node(pair_head_model(), "P18L0H0", SMALL).data
    here = write_node_figures(data, tmp_path / "here", ("png",))
    jobs = node_figure_jobs(data, tmp_path / "pool", ("png",))
    done = []
    pooled = dict(zip(jobs, run_jobs(list(jobs.values()), workers=2, done=done.append)))
    assert done == list(range(len(jobs)))
    assert list(pooled) == list(here) == ["pca", "attention", "necessity", "grid"]
    for name in here:
        assert [p.name for p in pooled[name]] == [p.name for p in here[name]]
        assert pooled[name][0].read_bytes() == here[name][0].read_bytes()
    assert figure_workers(1) == 1 and 1 <= figure_workers(100) <= 8
