"""Useful positions and nodes: a model with a planted copy head, the tag rules, the varied set, the CLI."""

import json

import numpy as np
import pytest
import torch
from helpers import arithlens

from arithlens.analysis.nodes import Major, Node, Tag
from arithlens.analysis.useful import (
    attention_tags,
    behaviour_tags,
    find_useful,
    node_ablation,
    node_hooks,
    varied_questions,
)
from arithlens.arith import PLUS, QType, QuestionBatch
from arithlens.interventions import Engine, Outcome, compute_means
from arithlens.model import HookedTransformer, ModelSpec, save_checkpoint

# 2 digits: D1 D0 OPR D'1 D'0 = A3 A2 A1 A0 at P0..P9; the logits at P5..P8 predict A3 (sign), A2, A1, A0.
SPEC = ModelSpec.parse("add_d2_l1_h2_t1K_s000001", d_model=100, d_head=16, d_mlp=16)
TOK, POS, OUT, MID = 0, 15, 25, 40  # feature blocks: token, position, "predict this token", a digit for the MLP
COPIES = {0: (1, 8), 1: (0, 7)}  # head -> (source position, destination): H0 copies D0 to P8, H1 copies D1 to P7




def feature(i: int) -> torch.Tensor:
    """Orthonormal directions with zero mean, so LayerNorm only rescales them."""
    v = torch.zeros(SPEC.d_model)
    v[2 * i], v[2 * i + 1] = 2**-0.5, -(2**-0.5)
    return v


def planted_model(neuron_readout: bool = False) -> HookedTransformer:
    """One layer; head h attends from its destination to its source position (elsewhere to the constant OPR
    token) and writes that digit as the prediction; the sign and A2 = 0 come from position embeddings; the
    MLP is off. So it answers a + 0 exactly, and only the two copy heads matter.

    With `neuron_readout`, head 0 writes the digit t into a middle feature that MLP neuron t turns into the
    prediction, against a standing preference for 0 at P8: ablating neuron t (1..9) then fails exactly
    the questions whose D0 is t."""
    m = HookedTransformer(SPEC)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.fill_(1.0 if name.endswith(".w") else 0.0)
        for t in range(SPEC.d_vocab):
            m.embed.W_E[t] = feature(TOK + t)
            m.unembed.W_U[:, t] = 4 * feature(OUT + t)
        for q in range(SPEC.n_ctx):
            m.pos_embed.W_pos[q] = feature(POS + q)
        m.pos_embed.W_pos[5] += feature(OUT + PLUS)  # P5 predicts the sign +
        m.pos_embed.W_pos[6] += feature(OUT + 0)  # P6 predicts A2 = 0
        attn = m.blocks[0].attn
        for h, (source, dest) in COPIES.items():
            for j in range(SPEC.n_ctx):
                attn.W_K[h, :, j] = feature(POS + j)  # key: "I am at position j"
                target = source if j == dest else (2 if j >= 2 else 0)
                attn.W_Q[h, :, target] += 3 * feature(POS + j)  # query at j looks for position `target`
            for t in range(10):
                attn.W_V[h, :, t] = feature(TOK + t)  # digits only: the OPR token carries nothing
                attn.W_O[h, t] = feature((MID if neuron_readout and h == 0 else OUT) + t)
        if neuron_readout:
            m.pos_embed.W_pos[8] += 2 * feature(OUT + 0)
            mlp = m.blocks[0].mlp
            for t in range(10):
                mlp.W_in[:, t] = feature(MID + t)
                mlp.W_out[t] = feature(OUT + t)
    return m.eval()


def plus_zero_questions() -> QuestionBatch:
    """a + 0 for every a, plus 77 three more times so 7 is the most common digit in both places."""
    a = np.array(list(range(100)) + [77, 77, 77])
    return QuestionBatch(2, a, np.full(len(a), PLUS, np.int8), np.zeros(len(a), np.int64))


def test_ablating_the_planted_copy_head_fails_exactly_its_answer_digit():
    model, questions = planted_model(), plus_zero_questions()
    engine = Engine(model, questions)
    assert engine.clean.n_fails == 0 and engine.clean.loss.max() < 1e-4
    means = compute_means(model, questions, node_hooks(SPEC))
    d0, d1 = questions.digits_a[:, 0], questions.digits_a[:, 1]
    for head, (digits, column) in {0: (d0, 3), 1: (d1, 2)}.items():  # answer tokens: sign, A2, A1, A0
        dest = COPIES[head][1]
        out = engine.outcome(node_ablation(means, Node(dest, 0, False, head)))
        # The mean of the copied digit predicts 7, the most common digit: every other question fails.
        assert np.array_equal(out.fails, digits != 7)
        assert np.array_equal(out.wrong[:, column], digits != 7)
        assert not np.delete(out.wrong, column, axis=1).any()
        # Anywhere else the head reads the constant OPR token: ablating it there changes nothing.
        assert engine.outcome(node_ablation(means, Node(dest - 1, 0, False, head))).n_fails == 0


def test_useful_nodes_of_the_planted_model_are_the_copy_heads_with_their_tags():
    result = find_useful(planted_model(), plus_zero_questions(), power=0)
    assert result.dropped == [] and len(result.questions) == 103
    # In a one-layer model a residual edit reaches only its own position's logits; P5 and P6 are constant.
    assert result.position_failures == [0] * 7 + [90, 90, 0]
    assert result.useful_positions == [7, 8]
    tags = {n.name: [str(t) for t in n.tags] for n in result.nodes}
    fail = str(100 * 90 // 103)
    assert tags == {
        "P7L0H1": [f"Fail%:{fail}", "Impact:A1", "Math.Add:S0", "Attn:P0=100"],
        "P8L0H0": [f"Fail%:{fail}", "Impact:A0", "Math.Add:S0", "Attn:P1=100"],
    }


def test_single_neurons_of_useful_mlp_layers_are_tagged_with_neurons():
    result = find_useful(planted_model(neuron_readout=True), plus_zero_questions(), neurons=True, power=0)
    tags = {n.name: [str(t) for t in n.tags] for n in result.nodes if n.node.is_mlp}
    d0_not_0 = 100 * 93 // 103  # the mean of every neuron loses to the standing 0
    assert tags.pop("P8L0MLP") == [f"Fail%:{d0_not_0}", "Impact:A0", "Math.Add:S0"]
    # Neuron t fails the 10 questions with D0 = t (13 for t = 7); neuron 0 only weakens a right answer.
    assert tags == {f"P8L0M{t}": [f"Fail%:{100 * (13 if t == 7 else 10) // 103}", "Impact:A0", "Math.Add:S0"]
                    for t in range(1, 10)}
    record = next(r for r in result.nodes.to_records() if r["tags"] and r["num"] == 7 and not r["is_head"]
                  and r.get("neuron"))
    assert record["position"] == 8


def test_the_clean_model_s_wrong_answers_are_dropped_first():
    questions = QuestionBatch.concat([plus_zero_questions(), QuestionBatch.from_strings(2, ["12+30", "45+01"])])
    result = find_useful(planted_model(), questions, power=0)
    assert len(result.questions) == 103
    assert result.dropped == ["12+30=+042 -> +012", "45+01=+046 -> +045"]


def test_behaviour_tags_follow_the_reference_rules():
    questions = QuestionBatch.from_strings(6, ["000001+000009", "099004-000008", "003111-003117", "100000-000001"])
    assert list(questions.complexity) == ["S1", "M3", "N4+", "M4+"]
    wrong = np.zeros((4, 8), bool)
    wrong[0, 0] = wrong[1, 7] = wrong[2, 3] = True  # the sign (A7), A0, A4; the last question is right
    out = Outcome(np.ones(4), wrong, 0.01)
    assert [str(t) for t in behaviour_tags(out, questions)] == [
        "Fail%:75", "Impact:A740", "Math.Add:S1", "Math.Sub:M3", "Math.Neg:N4"]
    wrong[3, 6] = True
    assert [str(t) for t in behaviour_tags(out, questions)][-2] == "Math.Sub:M34"  # M4+ contributes 4
    # A small loss is not a failure, wrong digit or not; Fail% rounds down.
    assert behaviour_tags(Outcome(np.full(4, 0.005), wrong, 0.01), questions) == []
    one = np.zeros((300, 8), bool)
    one[0, 7] = True
    many = QuestionBatch.from_strings(6, ["000001+000001"] * 300)
    assert str(behaviour_tags(Outcome(np.ones(300), one, 0.01), many)[0]) == "Fail%:0"


def test_attention_tags_take_the_top_four_keys_of_at_least_one_percent():
    pattern = torch.zeros(1, 1, 6, 6)
    pattern[0, 0, 5] = torch.tensor([0.005, 0.5, 0.3, 0.1, 0.08, 0.015])
    pattern[0, 0, 2, :3] = torch.tensor([0.98, 0.012, 0.008])
    assert attention_tags(pattern, Node(5, 0, False, 0)) == [
        Tag(Major.ATTN, "P1=50"), Tag(Major.ATTN, "P2=30"), Tag(Major.ATTN, "P3=10"), Tag(Major.ATTN, "P4=8")]
    assert [str(t) for t in attention_tags(pattern, Node(2, 0, False, 0))] == ["Attn:P0=98", "Attn:P1=1"]


def test_varied_questions_are_the_reference_mix_plus_the_curated_sets():
    spec = ModelSpec.parse("ins1_mix_d6_l3_h4_t40K_s372001", d_model=128, d_head=32)  # 80% subtraction
    batch = varied_questions(spec)
    assert len(batch) == 256 + 214
    counts = {qt: int((batch.qtype == qt).sum()) for qt in (QType.ADD, QType.SUB, QType.NEG)}
    assert counts[QType.ADD] == 256 - 204 + 110 and counts[QType.SUB] + counts[QType.NEG] == 204 + 72 + 32
    again = varied_questions(spec)
    assert np.array_equal(batch.tokens, again.tokens)
    assert not np.array_equal(batch.tokens, varied_questions(spec, seed=1).tokens)
    add_only = varied_questions(ModelSpec.parse("add_d6_l2_h3_t15K_s372001"), count=10)
    assert len(add_only) == 10 + 110 and (add_only.qtype == QType.ADD).all()


def test_cli_writes_the_behaviour_json_and_reports_json(tmp_path):
    save_checkpoint(planted_model(), SPEC, tmp_path / "planted")
    out = tmp_path / "out"
    # 3000 random 2-digit sums hold ~30 with b = 0, the only ones the planted model gets right.
    proc = arithlens("useful", "--model", str(tmp_path / "planted"), "--out", str(out), "--questions", "3000", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["useful_positions"] == [7, 8] and data["position_failures"][:7] == [0] * 7
    assert [n["name"] for n in data["nodes"]] == ["P7L0H1", "P8L0H0"]
    assert data["nodes"][1]["tags"][1:] == ["Impact:A0", "Math.Add:S0", "Attn:P1=100"]
    assert data["questions"] + len(data["dropped"]) == len(varied_questions(SPEC, count=3000)) > 3000
    saved = json.loads((out / f"{SPEC.name}_behavior.json").read_text())
    assert saved[1] == {"position": 8, "layer": 0, "is_head": True, "num": 0, "tags": data["nodes"][1]["tags"]}
    assert all((out / f).exists() for f in (p.split("/")[-1] for p in data["files"]))


@pytest.mark.parametrize("model, message", [
    ("no/such/dir", "error: "),
    ("bad_name", "error: "),
])
def test_cli_errors_are_one_line_exit_2_and_write_nothing(tmp_path, model, message):
    out = tmp_path / "out"
    proc = arithlens("useful", "--model", model, "--out", str(out), "--quiet")
    assert proc.returncode == 2 and proc.stderr.startswith(message) and len(proc.stderr.splitlines()) == 1
    assert not out.exists()


def test_cli_refuses_a_model_that_answers_nothing(tmp_path):
    save_checkpoint(HookedTransformer(SPEC, seed=1), SPEC, tmp_path / "random")
    proc = arithlens("useful", "--model", str(tmp_path / "random"), "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 2 and "answers none of the" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_power_budget_and_upper_bounds():
    from arithlens.analysis.useful import questions_for_power, upper_bound

    assert questions_for_power() == 598  # 0.995^598 <= 0.05 < 0.995^597
    assert 0.995 ** 598 <= 0.05 < 0.995 ** 597
    assert upper_bound(0, 598) == pytest.approx(1 - 0.05 ** (1 / 598)) and upper_bound(0, 598) < 0.005
    assert upper_bound(5, 5) == 1.0 and upper_bound(0, 0) == 1.0
    beta = pytest.importorskip("scipy.stats").beta
    for k, n in ((1, 100), (2, 100), (66, 3000), (7, 598)):
        assert upper_bound(k, n) == pytest.approx(beta.ppf(0.95, k + 1, n - k), rel=1e-6)


def test_power_stage_finds_a_head_the_screen_missed():
    # The screen's questions all copy a 7, so the means are 7 and ablating a copy head changes nothing there;
    # on uniform a+0 questions the same ablation fails every question whose digit is not 7.
    sevens = QuestionBatch(2, np.full(20, 77), np.full(20, PLUS, np.int8), np.zeros(20, np.int64))

    def source(spec, count, rng, exclude):
        a = rng.integers(0, 100, size=count)
        return QuestionBatch(2, a, np.full(count, PLUS, np.int8), np.zeros(count, np.int64))

    screen_only = find_useful(planted_model(), sevens, positions=[7, 8], power=0)
    assert len(screen_only.nodes) == 0 and screen_only.power_questions == 0
    assert screen_only.verdict("P8L0H0") == "unused: < 13.91% of each of ADD at 95%"  # 0 of 20
    result = find_useful(planted_model(), sevens, positions=[7, 8], power=600, power_source=source)
    assert result.power_found == ("P7L0H1", "P8L0H0") and result.power_questions == 600
    assert sorted(result.nodes.names) == ["P7L0H1", "P8L0H0"]
    k, n = result.failures["P8L0H0"]["ADD"]
    assert n == 620 and 480 < k < 600
    assert result.verdict("P8L0H0") == f"useful: fails {100 * k / n:.2g}% of ADD ({k}/{n})"
    assert result.verdict("P7L0H0") == "unused: < 0.48% of each of ADD at 95%"  # 0 of 620


def test_chunked_sweeps_give_the_same_tags_and_counts_as_one_batch(monkeypatch):
    # The sweep runs CHUNK questions per engine to bound its memory; every ablation's outcome is per question, so
    # the split must change nothing: 103 questions in chunks of 10 (the last one 3) against one batch of 103.
    import arithlens.analysis.useful as useful

    def run():
        result = find_useful(planted_model(neuron_readout=True), plus_zero_questions(), neurons=True, power=0)
        return ({n.name: [str(t) for t in n.tags] for n in result.nodes}, result.failures, result.position_failures)

    monkeypatch.setattr(useful, "CHUNK", 4096)
    whole = run()
    monkeypatch.setattr(useful, "CHUNK", 10)
    chunked = run()
    assert chunked == whole
    assert sorted(whole[0]) == sorted(["P7L0H1", "P8L0H0", "P8L0MLP", *(f"P8L0M{t}" for t in range(1, 10))])
    assert whole[2] == [0] * 7 + [90, 93, 0]
