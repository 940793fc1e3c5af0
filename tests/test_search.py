"""The sub-task search driver (an oracle runner, and the real engine on a model with planted copy heads),
its tagging rule, attention facts, determinism, algorithm claims and the `arithlens search` CLI."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from arithlens.analysis import subtasks as S
from arithlens.analysis.claims import Claim, default_claims, evaluate, evaluate_all
from arithlens.analysis.nodes import Major, Node, NodeList, UsefulNode
from arithlens.analysis.search import EngineRunner, Rule, coverage, search
from arithlens.arith import PLUS, QuestionBatch
from arithlens.arith.layout import Layout
from arithlens.errors import ParseError
from arithlens.interventions import patch_from, record, run_with_interventions
from arithlens.model import HookedTransformer, ModelSpec, save_checkpoint

# 3 digits: D2 D1 D0 OPR D'2 D'1 D'0 = A4 A3 A2 A1 A0 at P0..P12; A1 is computed at P10, A0 at P11.
MIX3 = ModelSpec.parse("mix_d3_l2_h4_t1K_s000001", d_model=16, d_head=4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def useful(name, impact, attn=None):
    un = UsefulNode(Node.parse(name))
    un.add(f"Impact:A{impact}")
    for pos, pct in (attn or {}).items():
        un.add(f"Attn:P{pos}={pct}")
    return un


class Oracle:
    """A fake patcher: `plan[(tag, node names)] = (kind, share)` makes that patch give the expected answer
    ("strong") or change exactly the expected digits to a wrong value ("weak") in the first `share` of the
    rows; any other patch leaves the clean answer. The last `invalid` rows are answered wrong unpatched."""

    def __init__(self, pairs, plan, invalid=10):
        self.pairs, self.plan = pairs, plan
        self.clean_pred = pairs.clean_tokens.copy()
        self.clean_pred[len(pairs) - invalid:, -1] += 1  # wrong last digit: not judged
        self.store_pred = pairs.store_tokens.copy()

    def patched(self, nodes):
        out = self.pairs.clean_tokens.copy()
        kind, share = self.plan.get((self.pairs.tag, frozenset(n.name for n in nodes)), ("none", 0.0))
        rows = np.arange(len(out)) < share * len(out)
        if kind == "strong":
            out[rows] = self.pairs.expected_tokens[rows]
        elif kind == "weak":
            wrong = self.pairs.expected_tokens.copy()
            for i, j in zip(*np.nonzero(self.pairs.impact)):
                wrong[i, j] = next(d for d in range(10) if d not in (wrong[i, j], out[i, j]))
            out[rows] = wrong[rows]
        return out


def oracle(plan, invalid=10):
    return lambda pairs: Oracle(pairs, plan, invalid)


def mix3_nodes():
    return NodeList([
        useful("P10L0H0", 1, {1: 99}),  # D1: with H2 a virtual head for A1.SA
        useful("P10L0H1", 1, {2: 50, 6: 50}),  # D0 and D'0: the planted A0.SC head
        useful("P10L0H2", 1, {5: 99}),  # D'1
        useful("P10L0H3", 1, {2: 60, 6: 40}),  # a decoy with the same tags
        useful("P10L1H0", 1),  # a deeper head: no attention clause
        useful("P10L1MLP", 1),
        useful("P4L0H1", 432, {3: 90}),  # attends OPR only
        useful("P9L0H1", 3, {3: 40, 8: 40}),  # attends OPR and the sign
    ])


def run(plan, tasks=(S.SC, S.SA, S.OPR, S.SGN), **kwargs):
    return search(mix3_nodes(), MIX3, oracle(plan), tasks=tasks, **kwargs)


def algo(result):
    return result.algo_tags()


def test_the_planted_node_is_tagged_with_its_rate_and_the_decoy_is_not():
    result = run({("A0.SC", frozenset({"P10L0H1"})): ("strong", 1.0)})
    assert algo(result)["P10L0H1"] == ["A0.SC"]
    by_node = {t.name: t for t in result.trials if t.tag == "A0.SC"}
    assert (by_node["P10L0H1"].valid, by_node["P10L0H1"].strong, by_node["P10L0H1"].weak) == (90, 90, 90)
    assert by_node["P10L0H3"].strong == 0 and by_node["P10L0H3"].tagged is None
    record_ = by_node["P10L0H1"].to_dict()
    assert record_["strong"]["rate"] == 1.0 and record_["strong"]["n"] == 90 and record_["tagged"] == "A0.SC"
    assert 0.95 < record_["strong"]["ci"][0] < 1.0 == record_["strong"]["ci"][1]


def test_a_rate_is_tagged_only_when_its_interval_clears_the_rule():
    rule = Rule()
    assert rule.passes(60, 100) and not rule.passes(59, 100)
    assert rule.passes(5, 5) and not rule.passes(4, 5) and not rule.passes(0, 0)
    # 0.7 of 100 rows, of which the first 70 are all valid: 70/90 passes; 0.5 (50/90) does not.
    assert "P10L0H1" in algo(run({("A0.SC", frozenset({"P10L0H1"})): ("strong", 0.7)}))
    assert "P10L0H1" not in algo(run({("A0.SC", frozenset({"P10L0H1"})): ("strong", 0.5)}))


def test_split_attention_heads_are_tried_together_as_a_virtual_head():
    result = run({("A1.SA", frozenset({"P10L0H0", "P10L0H2"})): ("strong", 1.0)})
    assert algo(result)["P10L0H0"] == algo(result)["P10L0H2"] == ["A1.SA"]
    tried = {t.name for t in result.trials if t.tag == "A1.SA"}
    assert "P10L0H0+P10L0H2" in tried
    assert "P10L0H0" not in tried and "P10L0H2" not in tried  # each attends only half of what SA needs
    assert "P10L1H0" in tried and "P10L1MLP" in tried  # deeper heads and MLPs: judged by the patch alone
    off = run({("A1.SA", frozenset({"P10L0H0", "P10L0H2"})): ("strong", 1.0)}, pair_search=False)
    assert "P10L0H0" not in algo(off)


def test_weak_tags_follow_the_policy():
    plan = {("A0.SC", frozenset({"P10L1H0"})): ("weak", 1.0), ("A0.SC", frozenset({"P10L0H1"})): ("strong", 1.0)}
    assert algo(run(plan))["P10L1H0"] == ["A0.SC.A1"]
    assert "P10L1H0" not in algo(run(plan, weak="never"))
    assert "P10L1H0" not in algo(run(plan, weak="fallback"))  # a strong tag exists for A0.SC
    alone = {("A0.SC", frozenset({"P10L1H0"})): ("weak", 1.0)}
    assert algo(run(alone, weak="fallback"))["P10L1H0"] == ["A0.SC.A1"]


def test_mlp_nodes_can_get_a_purpose():
    result = run({("A1.SA", frozenset({"P10L1MLP"})): ("strong", 1.0)})
    assert algo(result)["P10L1MLP"] == ["A1.SA"]
    assert coverage(result.nodes).mlps_purposed == 1 and coverage(result.nodes).mlps == 1


def test_attention_facts_alone_are_dropped_but_kept_in_pairs_or_beside_a_purpose():
    result = run({})
    tags = algo(result)
    assert "P4L0H1" not in tags  # OPR only
    assert tags["P9L0H1"] == ["OPR", "SGN"]
    cov = result.coverage
    assert (cov.heads, cov.heads_purposed, cov.heads_strong) == (7, 1, 0)
    assert "1 of 7 useful attention heads (14.29%)" in cov.line()


def test_input_algo_tags_are_replaced_and_other_tags_kept():
    nodes = mix3_nodes()
    nodes.get("P10L1H0").add("Algo:A4.SA")
    result = search(nodes, MIX3, oracle({}), tasks=(S.SC,))
    assert "P10L1H0" not in algo(result)
    assert [str(t) for t in result.nodes.get("P10L1H0").tags] == ["Impact:A1"]
    assert nodes.get("P10L1H0").values(Major.ALGO) == ["A4.SA"]  # the input list is left alone


# ---- the real engine on a model with planted copy heads ----

from test_useful import SPEC as COPY_SPEC  # noqa: E402  (2 digits; answers a + 0 exactly)
from test_useful import planted_model  # noqa: E402

COPY_SA = dataclasses.replace(S.SA, prereq=dataclasses.replace(S.SA.prereq, attends=()))  # D'k is always 0 here


def plus_zero_pairs(task, k, count, rng):
    """a + 0 questions (the only ones the planted model answers) and the same with digit k of a changed."""
    a = rng.integers(0, 100, count)
    shift = rng.integers(1, 10, count)
    store_a = a + ((a // 10**k % 10 + shift) % 10 - a // 10**k % 10) * 10**k
    zero, plus = np.zeros(count, np.int64), np.full(count, PLUS, np.int8)
    return task.pairs_from(QuestionBatch(2, store_a, plus, zero), QuestionBatch(2, a, plus, zero), k)


def copy_nodes():
    return NodeList([useful("P7L0H1", 1, {0: 100}), useful("P8L0H0", 0, {1: 100}),
                     useful("P7L0H0", 1, {2: 100}), useful("P8L0MLP", 0)])


def test_patching_the_planted_copy_head_moves_its_answer_digit_in_every_pair():
    model = planted_model()
    result = search(copy_nodes(), COPY_SPEC, lambda pairs: EngineRunner(model, pairs), tasks=(COPY_SA,),
                    n_pairs=40, make_pairs=plus_zero_pairs)
    assert algo(result) == {"P7L0H1": ["A1.SA"], "P8L0H0": ["A0.SA"]}
    rates = {(t.name, t.tag): (t.valid, t.strong, t.pairs_valid) for t in result.trials}
    assert rates[("P8L0H0", "A0.SA")] == (40, 40, 40) and rates[("P7L0H1", "A1.SA")] == (40, 40, 40)
    # The sequential test stops the others after 19 of the 40 pairs: with 0 hits there, 21 more cannot reach
    # the 27 that 40 pairs need (stage_ends: 40 - 27 + 1 + STAGE_SLACK).
    assert rates[("P8L0MLP", "A0.SA")] == (19, 0, 40)  # the MLP is off
    assert rates[("P7L0H0", "A1.SA")] == (19, 0, 40)  # H0 at P7 reads the constant OPR token


def test_the_engine_runner_patches_row_i_with_row_i_as_a_full_forward_does():
    spec = ModelSpec.parse("mix_d2_l2_h2_t1K_s000001", d_model=16, d_head=4, d_mlp=32)
    model = HookedTransformer(spec, seed=3).eval()
    pairs = S.MD.pairs(2, 0, 12, np.random.default_rng(0))
    runner = EngineRunner(model, pairs)
    stored = record(model, pairs.store, ["blocks.0.attn.hook_z", "blocks.1.mlp.hook_post"])
    answer = slice(spec.layout.n_question, None)
    for node, hook, which in ((Node(7, 0, False, 1), "blocks.0.attn.hook_z", {"head": 1}),
                              (Node(8, 1, True, -1), "blocks.1.mlp.hook_post", {})):
        full = run_with_interventions(model, pairs.clean.torch_tokens(), [patch_from(stored, hook, node.position, **which)])
        assert np.array_equal(runner.patched([node]), full.argmax(-1).numpy())
    store_logits = model(pairs.store.torch_tokens(), logit_positions=spec.layout.answer_logit_positions)
    assert np.array_equal(runner.store_pred, store_logits.argmax(-1).numpy())
    assert pairs.clean_tokens.shape == runner.clean_pred.shape == (12, spec.layout.n_answer)
    assert np.array_equal(pairs.clean_tokens, pairs.clean.tokens[:, answer])


def test_the_search_is_deterministic_and_each_task_digit_has_its_own_seed():
    spec = ModelSpec.parse("mix_d2_l2_h2_t1K_s000001", d_model=16, d_head=4, d_mlp=32)
    model = HookedTransformer(spec, seed=3).eval()
    nodes = NodeList([useful("P7L1H0", 1), useful("P7L1MLP", 1), useful("P6L0MLP", 2)])
    runner = lambda pairs: EngineRunner(model, pairs)  # noqa: E731
    one = search(nodes, spec, runner, tasks=(S.SC, S.SA), n_pairs=30, seed=5).to_json()
    two = search(nodes, spec, runner, tasks=(S.SC, S.SA), n_pairs=30, seed=5).to_json()
    assert one == two and one["trials"]
    only_sa = search(nodes, spec, runner, tasks=(S.SA,), n_pairs=30, seed=5).to_json()
    assert only_sa["trials"] == [t for t in one["trials"] if t["task"] == "SA"]
    assert only_sa["cells"] == [c for c in one["cells"] if c["task"] == "SA"]
    other = search(nodes, spec, runner, tasks=(S.SA,), n_pairs=30, seed=6).to_json()
    assert [c["example"] for c in other["cells"]] != [c["example"] for c in only_sa["cells"]]


# ---- claims ----

def claim_nodes():
    nodes = NodeList()
    for name, tags in {"P18L0H0": ["A1.SC"], "P18L0H1": ["A2.SA"], "P18L0H2": ["A2.SA"], "P17L0H0": ["A2.SC"],
                       "P13L0H0": ["A3.GT"], "P9L0H0": ["A3.ST.A4"]}.items():
        for tag in tags:
            nodes.add_tag(Node.parse(name), f"Algo:{tag}")
    return nodes


def test_a_claim_passes_with_the_nodes_that_satisfy_each_clause():
    layout = Layout(6)
    result = evaluate(Claim("ADD", 2, ("A2.SA", "A1.SC"), position=18), claim_nodes(), layout)
    assert result.passed
    assert result.clauses == (("A2.SA", ("P18L0H1", "P18L0H2")), ("A1.SC", ("P18L0H0",)))
    assert result.line().startswith("PASS ADD A2 @P18: A2.SA A1.SC")


def test_a_claim_fails_when_a_clause_is_missing_or_out_of_place():
    layout = Layout(6)
    wrong_place = evaluate(Claim.parse("ADD A3 @P17: A3.SA A2.SC"), claim_nodes(), layout)
    assert not wrong_place.passed and wrong_place.clauses[0] == ("A3.SA", ())
    assert "FAIL" in wrong_place.line() and "(none)" in wrong_place.line()
    # Without a position, a clause must hold at or before where the answer digit is computed (A1: P19).
    assert evaluate(Claim.parse("ADD A1: A1.SC"), claim_nodes(), layout).passed
    assert not evaluate(Claim.parse("ADD A0 <=P17: A1.SC"), claim_nodes(), layout).passed


def test_claim_alternatives_and_weak_tags():
    layout = Layout(6)
    assert evaluate(Claim.parse("SUB/NEG A7: A5.GT|A3.GT"), claim_nodes(), layout).passed
    assert not evaluate(Claim.parse("ADD A4 <=P14: A3.ST"), claim_nodes(), layout).passed
    assert evaluate(Claim.parse("ADD A4 <=P14: A3.ST", weak=True), claim_nodes(), layout).passed


def test_claims_parse_and_print_round_trip():
    for text in ("ADD A2 @P18: A2.SA A1.SC", "NEG A7 <=P13: A5.GT|A4.GT", "SUB A3: A3.MD A2.MB"):
        assert str(Claim.parse(text)) == text
    with pytest.raises(ParseError, match="cannot parse claim"):
        Claim.parse("A2 = SA + SC")


def test_default_claims_mirror_the_mixed_model_hypothesis():
    claims = [str(c) for c in default_claims(6)]
    assert "ADD A2 @P18: A2.SA A1.SC" in claims and "SUB A2 @P18: A2.MD A1.MB" in claims
    assert "NEG A0 @P20: A0.ND" in claims and "ADD A6 @P14: A5.SC" in claims
    assert "SUB/NEG A7: A5.GT|A4.GT|A3.GT|A2.GT|A1.GT|A0.GT" in claims
    assert "ADD A4 <=P14: A3.ST" in claims and "NEG A5 <=P14: A4.NT" in claims
    assert len(claims) == 6 * 3 + 1 + 1 + 6 + 5 + 5
    assert all(c.op == "ADD" for c in default_claims(6, sub=False))
    results = evaluate_all(default_claims(6), claim_nodes(), Layout(6))
    assert [str(r.claim) for r in results if r.passed] == [
        "ADD A2 @P18: A2.SA A1.SC", "SUB/NEG A7: A5.GT|A4.GT|A3.GT|A2.GT|A1.GT|A0.GT"]


# ---- CLI ----

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "arithlens.cli", "search", *args], capture_output=True, text=True)


def test_cli_writes_the_algorithm_json_and_the_search_record(tmp_path):
    spec = ModelSpec.parse("mix_d2_l2_h2_t1K_s000001", d_model=16, d_head=4, d_mlp=32)
    save_checkpoint(HookedTransformer(spec, seed=3), spec, tmp_path / "m")
    nodes = NodeList([useful("P7L1H0", 1), useful("P7L0H1", 1, {3: 60, 6: 30}), useful("P2L0H0", 1, {2: 90})])
    nodes.save(tmp_path / "b.json")
    out = tmp_path / "out"
    proc = run_cli("--model", str(tmp_path / "m"), "--out", str(out), "--nodes", str(tmp_path / "b.json"),
                   "--pairs", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["coverage"]["heads"]["useful"] == 3 and data["coverage"]["mlps"]["useful"] == 0
    assert data["tags"] == {}  # P2L0H0 attends only the operator: an attention fact is not a purpose
    saved = json.loads((out / f"{spec.name}_algorithm.json").read_text())
    assert [(r["position"], r["layer"], r["num"]) for r in saved] == [(2, 0, 0), (7, 0, 1), (7, 1, 0)]
    assert all(t.startswith("Algo:") for r in saved for t in r["tags"])
    rec = json.loads((out / f"{spec.name}_search.json").read_text())
    assert rec["pairs"] == 8 and rec["seed"] == 0 and rec["claims"] and rec["cells"]
    assert all(set(t) >= {"node", "task", "digit", "strong", "weak", "tagged"} for t in rec["trials"])


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    spec = ModelSpec.parse("mix_d2_l2_h2_t1K_s000001", d_model=16, d_head=4, d_mlp=32)
    save_checkpoint(HookedTransformer(spec, seed=3), spec, tmp_path / "m")
    out = tmp_path / "out"
    proc = run_cli("--model", str(tmp_path / "m"), "--out", str(out), "--nodes", str(tmp_path / "none.json"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: --nodes") and len(proc.stderr.splitlines()) == 1
    assert not out.exists()


# ---- groups of heads at one position ----

def test_a_group_tags_every_member_only_when_each_is_needed():
    assert Rule.all_needed(90, [50, 40], 100) and not Rule.all_needed(90, [85, 0], 100)
    # Two deeper heads at P10 that each do nothing alone but together move A1 (a split job): both tagged.
    plan = {("A1.SA", frozenset({"P10L1H0", "P10L0H0"})): ("strong", 1.0)}
    result = run(plan)
    assert algo(result)["P10L1H0"] == algo(result)["P10L0H0"] == ["A1.SA"]
    group = next(t for t in result.trials if t.name == "P10L0H0+P10L1H0" and t.tag == "A1.SA")
    record_ = group.to_dict()
    assert record_["tagged"] == "A1.SA" and record_["strong"]["k"] == 90
    assert record_["without"]["P10L0H0"]["strong"]["k"] == record_["without"]["P10L1H0"]["strong"]["k"] == 0
    cell = next(c for c in result.cells if c.tag == "A1.SA")
    assert "P10L0H0+P10L1H0" in cell.tagged  # the cell names the group
    # A free rider: P10L1H0 does the job alone, P10L0H0 adds nothing, so only P10L1H0 is tagged.
    rider = run({("A1.SA", frozenset({"P10L1H0", "P10L0H0"})): ("strong", 1.0),
                 ("A1.SA", frozenset({"P10L1H0"})): ("strong", 1.0)})
    assert algo(rider)["P10L1H0"] == ["A1.SA"] and "P10L0H0" not in algo(rider)


def test_groups_have_at_most_max_group_heads_and_can_be_switched_off():
    plan = {("A1.SA", frozenset({"P10L0H0", "P10L0H2", "P10L1H0"})): ("strong", 1.0)}
    assert algo(run(plan))["P10L1H0"] == ["A1.SA"]
    assert "P10L1H0" not in algo(run(plan, max_group=2))
    assert not any("+" in t.name for t in run(plan, pair_search=False).trials)


# ---- the shipped mixed model ----

def test_shipped_model_sign_head_cascade_pair_and_carry_pair_are_found_by_their_patches():
    """P14L0H3 reads the answer's sign token (95% of its attention) and tells A1..A4 whether to compute a - b or
    b - a; P14L1H2 passes digit 4's carry on through digit 5 (A5.SS) together with P14L2H2, a head that is not
    a useful node; P18L2H0 and P18L2H2 carry digit 1 into A2 together (A1.SC), while neither does alone."""
    from arithlens.model.checkpoint import load_checkpoint
    from arithlens.model.zoo import resolve_model

    model = load_checkpoint(resolve_model("mix_d6_l3_h4_t10K_s372001")).model.eval()
    nodes = NodeList([useful("P14L0H3", 4321, {14: 95}), useful("P14L1H2", 6, {8: 41}),
                      useful("P18L2H0", 2, {11: 35, 14: 23, 12: 21}), useful("P18L2H2", 2, {11: 46, 14: 22, 12: 20})])
    result = search(nodes, model.spec, lambda pairs: EngineRunner(model, pairs), tasks=(S.SGN, S.SS, S.SC),
                    n_pairs=40)
    rates = {(t.name, t.tag): t.strong / t.valid for t in result.trials}
    assert min(rates[("P14L0H3", f"A{d}.SGN")] for d in range(1, 5)) >= 0.75
    assert rates[("P14L1H2+P14L2H2", "A5.SS")] == 1.0 and rates[("P14L1H2", "A5.SS")] <= 0.5
    assert rates[("P18L2H0+P18L2H2", "A1.SC")] == 1.0
    assert rates[("P18L2H0", "A1.SC")] <= 0.1 and rates[("P18L2H2", "A1.SC")] <= 0.5
    tags = algo(result)
    assert {"SGN", "A1.SGN", "A4.SGN"} <= set(tags["P14L0H3"]) and tags["P14L1H2"] == ["A5.SS"]
    assert "A1.SC" in tags["P18L2H0"] and "A1.SC" in tags["P18L2H2"]
    pair = next(t for t in result.trials if t.name == "P14L1H2+P14L2H2" and t.tag == "A5.SS")
    assert pair.to_dict()["not_useful"] == ["P14L2H2"]


def test_a_head_can_share_a_job_with_a_deeper_head_that_is_not_a_useful_node():
    # P10L1H2 is not in the node list (its ablation failed no question) but does half of P10L1H0's job.
    plan = {("A1.SA", frozenset({"P10L1H0", "P10L1H2"})): ("strong", 1.0)}
    result = run(plan)
    assert algo(result)["P10L1H0"] == ["A1.SA"] and "P10L1H2" not in result.nodes
    pair = next(t for t in result.trials if t.name == "P10L1H0+P10L1H2" and t.tag == "A1.SA")
    assert pair.to_dict()["not_useful"] == ["P10L1H2"] and pair.tagged == "A1.SA"
    assert "P10L1H0" not in algo(run(plan, partners=False))
    # A head that passes alone is not paired with partners.
    alone = run({("A1.SA", frozenset({"P10L1H0"})): ("strong", 1.0)})
    assert not any(t.name.startswith("P10L1H0+P10L1H") for t in alone.trials if t.tag == "A1.SA")
    partners = {p for t in alone.trials for p in t.partners}
    assert partners and all(p.layer >= 1 and p not in alone.nodes for p in partners)  # never layer 0
