"""Exact evaluation: batched teacher-forced verdicts equal slow per-question and greedy ones, bf16 changes
no verdict, totals add up, and `arithlens eval` / `convert` fail with one line and no output file."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import arithlens_here

from arithlens.arith import (
    MINUS,
    PLUS,
    QType,
    QuestionBatch,
    string_to_tokens,
    tokens_to_string,
    uniform,
)
from arithlens.errors import ArithLensError
from arithlens.model import HookedTransformer, ModelSpec, save_checkpoint
from arithlens.model.evaluate import (
    Bf16Guard,
    EvalResult,
    evaluate,
    evaluate_suite,
    suite_size,
    supported_qtypes,
)
from arithlens.model.zoo import MODELS_ENV


def all_questions(n_digits: int) -> QuestionBatch:
    """Every a+b and a-b question with n-digit operands (200 for one digit: 100 ADD, 55 SUB, 45 NEG)."""
    a, b = np.meshgrid(np.arange(10**n_digits), np.arange(10**n_digits), indexing="ij")
    a, b = np.tile(a.ravel(), 2), np.tile(b.ravel(), 2)
    op = np.repeat(np.array([PLUS, MINUS], np.int8), len(a) // 2)
    return QuestionBatch(n_digits, a, op, b)


@pytest.fixture(scope="module")
def half_trained():
    """A 1-digit add/sub model trained for 250 steps: some questions right, some wrong."""
    spec = ModelSpec.parse("mix_d1_l1_h2_t1K_s000001", d_model=32, d_head=16, d_mlp=64)
    model = HookedTransformer(spec, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    pos = spec.layout.answer_logit_positions
    for _ in range(250):
        tokens = uniform(1, 64, rng, op="mix").torch_tokens()
        logits = model(tokens[:, :-1], logit_positions=pos)  # (64, 3, 15)
        loss = F.cross_entropy(logits.reshape(-1, spec.d_vocab), tokens[:, pos.start + 1 :].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.requires_grad_(False)


def copy_model(n_digits: int) -> HookedTransformer:
    """Hand-set: the blocks add nothing, so logits at a position depend on its token only. The model
    predicts '+' after '=', 0 after a sign, and after a digit the same digit again."""
    spec = ModelSpec.parse(f"mix_d{n_digits}_l1_h1_t1K_s000001", d_model=16, d_head=4, d_mlp=8)
    model = HookedTransformer(spec, seed=0)
    nxt = {t: t for t in range(10)} | {PLUS: 0, MINUS: 0, string_to_tokens("=")[0]: PLUS}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("blocks.") and not name.endswith((".w", ".b")) or name == "pos_embed.W_pos":
                p.zero_()
        model.embed.W_E.copy_(torch.eye(spec.d_vocab, spec.d_model) * 10)  # one direction per token
        model.unembed.W_U.zero_()
        for t in range(spec.d_vocab):
            model.unembed.W_U[t, nxt.get(t, 0)] = 1.0
    return model.requires_grad_(False)


def slow_verdicts(model: HookedTransformer, q: QuestionBatch) -> tuple[np.ndarray, np.ndarray]:
    """One full forward per question, from the question and answer strings: (row wrong, wrong per answer position)."""
    layout = q.layout
    rows, digits = [], []
    for i in range(len(q)):
        tokens = torch.tensor(string_to_tokens(q.question_string(i) + q.answer_string(i)))
        pred = model(tokens[None])[0].argmax(-1)  # (n_ctx,) the token each position predicts next
        wrong = pred[layout.n_question - 1 : layout.n_ctx - 1] != tokens[layout.n_question :]
        rows.append(bool(wrong.any()))
        digits.append(wrong.numpy())
    return np.array(rows), np.array(digits)


def counts(result: EvalResult) -> dict:
    """The verdict part of a result: everything but timing and precision bookkeeping."""
    skip = ("seconds", "precision", "rechecked", "audited", "bf16_closest")
    return {k: v for k, v in result.to_dict().items() if k not in skip}


def greedy_answer(model: HookedTransformer, q: QuestionBatch, i: int) -> str:
    tokens = string_to_tokens(q.question_string(i))
    for _ in range(q.layout.n_answer):
        tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens_to_string(tokens[q.layout.n_question :])


def test_hand_set_copy_model_is_right_only_on_zero_answers_and_wrong_digits_match():
    model = copy_model(3)
    q = QuestionBatch.concat([uniform(3, 300, np.random.default_rng(4), op="mix"),
                              QuestionBatch.from_strings(3, ["123-123=", "000+000=", "999-999="])])
    result = evaluate(model, q, precision="fp32", per_question=True)
    answers = [q.answer_string(i) for i in range(len(q))]
    expected_wrong = np.array([a != "+0000" for a in answers])
    assert result.questions == 303 and result.wrong == int(expected_wrong.sum()) == 300
    assert (result.row_wrong == expected_wrong).all()
    # Sign: '+' predicted, so NEG rows fail there; A3: 0 predicted; A2..A0: the digit before repeated.
    expected_digits = {
        "A4": sum(a[0] == "-" for a in answers),
        "A3": sum(a[1] != "0" for a in answers),
        **{f"A{k}": sum(a[4 - k] != a[3 - k] for a in answers) for k in (2, 1, 0)},
    }
    assert result.by_answer_digit == expected_digits
    assert (result.row_margin[~expected_wrong] > 0).all() and (result.row_margin[expected_wrong] <= 0).all()


def test_batched_verdict_equals_a_slow_per_question_loop(half_trained):
    q = all_questions(1)
    rows, digits = slow_verdicts(half_trained, q)
    result = evaluate(half_trained, q, precision="fp32", batch_size=7, per_question=True)
    assert 0 < result.wrong < len(q)  # the model is half right: the check means something
    assert (result.row_wrong == rows).all() and result.wrong == int(rows.sum())
    assert list(result.by_answer_digit.values()) == digits.sum(0).tolist()
    for qt in (QType.ADD, QType.SUB, QType.NEG):
        mask = q.qtype == qt
        assert result.by_qtype[qt.name] == {"questions": int(mask.sum()), "wrong": int(rows[mask].sum())}
    assert sum(c["questions"] for c in result.by_complexity.values()) == len(q)
    assert sum(c["wrong"] for c in result.by_complexity.values()) == result.wrong


def test_margin_is_positive_exactly_on_right_questions(half_trained):
    result = evaluate(half_trained, all_questions(1), precision="fp32", per_question=True)
    assert ((result.row_margin > 0) == ~result.row_wrong).all()


def test_greedy_decoding_verdict_equals_teacher_forced_verdict(half_trained):
    q = all_questions(1).select(np.arange(0, 200, 5))
    result = evaluate(half_trained, q, precision="fp32", per_question=True)
    greedy_wrong = np.array([greedy_answer(half_trained, q, i) != q.answer_string(i) for i in range(len(q))])
    assert 0 < greedy_wrong.sum() < len(q)
    assert (greedy_wrong == result.row_wrong).all()


def test_failures_show_question_model_answer_and_true_answer(half_trained):
    q = all_questions(1)
    result = evaluate(half_trained, q, precision="fp32", max_failures=3, per_question=True)
    first = np.flatnonzero(result.row_wrong)[:3]
    assert len(result.failures) == 3
    for text, i in zip(result.failures, first):
        model_answer, true_answer = text[len(q.question_string(i)) :].split(" vs ")
        assert text.startswith(q.question_string(i)) and true_answer == q.answer_string(i)
        assert len(model_answer) == q.layout.n_answer and model_answer != true_answer


def test_bf16_with_fp32_rechecks_changes_no_verdict(half_trained):
    q = QuestionBatch.concat([all_questions(1)] * 5)
    exact = evaluate(half_trained, q, precision="fp32", per_question=True)
    fast = evaluate(half_trained, q, precision="bf16", per_question=True)
    assert 0 < exact.wrong < len(q)
    assert 0 < fast.rechecked < len(q)  # some rows were decided in bf16 alone, some re-checked
    assert fast.precision == "bf16" and fast.bf16_closest < 1
    assert (fast.row_wrong == exact.row_wrong).all()
    assert counts(fast) == counts(exact)


def test_bf16_falls_back_to_fp32_when_an_audit_comes_too_close(half_trained):
    q = all_questions(1)
    exact = evaluate(half_trained, q, precision="fp32", per_question=True)
    result = evaluate(half_trained, q, precision="bf16", per_question=True, guard=Bf16Guard(audit_limit=0.0))
    assert result.precision == "bf16->fp32"
    assert (result.row_wrong == exact.row_wrong).all()


def test_worker_threads_give_the_same_result_and_restore_torch_threads(half_trained):
    q = QuestionBatch.concat([all_questions(1)] * 2)
    torch.set_num_threads(3)
    one = evaluate(half_trained, q, precision="fp32", batch_size=16, workers=1, per_question=True)
    two = evaluate(half_trained, q, precision="fp32", batch_size=16, workers=2, per_question=True)
    assert torch.get_num_threads() == 3
    torch.set_num_threads(1)
    assert (one.row_wrong == two.row_wrong).all() and np.array_equal(one.row_margin, two.row_margin)
    assert counts(one) == counts(two)


def test_streamed_chunks_add_up_to_one_batch(half_trained):
    q = all_questions(1)
    whole = evaluate(half_trained, q, precision="fp32")
    streamed = evaluate(half_trained, (q.select(slice(s, s + 37)) for s in range(0, len(q), 37)), precision="fp32")
    assert counts(whole) == counts(streamed)


def test_questions_of_another_width_are_an_error(half_trained):
    with pytest.raises(ArithLensError, match="questions have 2 digits but model .* takes 1"):
        evaluate(half_trained, uniform(2, 4, np.random.default_rng(0)))


@pytest.mark.parametrize("op, qtypes", [("add", ["ADD"]), ("sub", ["SUB", "NEG"]), ("mix", ["ADD", "SUB", "NEG"]),
                                        ("mul", ["MUL"]), ("mas", ["ADD", "SUB", "NEG", "MUL"])])
def test_supported_qtypes_follow_the_operation(op, qtypes):
    assert [q.name for q in supported_qtypes(ModelSpec.parse(f"{op}_d6_l1_h1_t1K_s000001"))] == qtypes


def test_suite_checks_n_per_qtype_plus_curated_and_a_tenth_enriched():
    model = copy_model(6)
    suite = evaluate_suite(model, questions=500, precision="fp32")
    assert list(suite.kinds) == ["uniform", "curated", "enriched", "stress"]
    assert suite.kinds["uniform"].by_qtype == {k: {"questions": 500, "wrong": 500} for k in ("ADD", "SUB", "NEG")}
    assert suite.kinds["enriched"].questions == 50
    assert suite.kinds["curated"].questions > 0
    total = suite.to_dict()
    assert suite.kinds["stress"].questions == 100  # 500 // 5, every qtype of a mixed model
    assert total["questions"] == 1650 + suite.kinds["curated"].questions == suite_size(model.spec, questions=500)
    assert total["wrong"] == sum(r.wrong for r in suite.kinds.values())
    assert set(total["kinds"]) == {"uniform", "curated", "enriched", "stress"}
    again = evaluate_suite(model, questions=500, precision="fp32", kinds=("uniform",))
    assert again.kinds["uniform"].failures == suite.kinds["uniform"].failures  # same seed, same questions
    other = evaluate_suite(model, questions=500, precision="fp32", kinds=("uniform",), seed=1)
    assert other.kinds["uniform"].failures != suite.kinds["uniform"].failures


def test_an_add_model_suite_asks_only_add_questions():
    spec = ModelSpec.parse("add_d3_l1_h1_t1K_s000001", d_model=16, d_head=4, d_mlp=8)
    suite = evaluate_suite(HookedTransformer(spec), questions=40, precision="fp32")
    assert {k: list(r.by_qtype) for k, r in suite.kinds.items()} == {
        "uniform": ["ADD"], "curated": ["ADD"], "enriched": ["ADD"], "stress": ["ADD"]}


def test_combine_sums_counts():
    a = EvalResult(questions=3, wrong=1, by_qtype={"ADD": {"questions": 3, "wrong": 1}}, by_answer_digit={"A0": 1})
    b = EvalResult(questions=2, wrong=2, by_answer_digit={"A0": 2},
                   by_qtype={"ADD": {"questions": 1, "wrong": 1}, "SUB": {"questions": 1, "wrong": 1}})
    c = EvalResult.combine([a, b])
    assert (c.questions, c.wrong, c.accuracy) == (5, 3, 0.4)
    assert c.by_qtype == {"ADD": {"questions": 4, "wrong": 2}, "SUB": {"questions": 1, "wrong": 1}}
    assert c.by_answer_digit == {"A0": 3}


# ---------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A models directory holding one tiny mixed model, used as the shipped set."""
    directory = tmp_path / "models"
    save_checkpoint(copy_model(2), None, directory / "mix_d2_l1_h1_t1K_s000001")
    monkeypatch.setenv(MODELS_ENV, str(directory))
    return directory


def test_eval_without_model_checks_the_shipped_default_and_writes_json(shipped, tmp_path, monkeypatch, capsys):
    out_file = tmp_path / "report.json"
    code, out, _ = arithlens_here(monkeypatch, capsys, "eval", "--questions", "30", "--precision", "fp32", "--json",
                           "--quiet", "--out", str(out_file))
    assert code == 0
    report = json.loads(out)
    assert report == json.loads(out_file.read_text())
    assert report["model"] == "mix_d2_l1_h1_t1K_s000001" and report["kind"] == "suite"
    assert report["by_qtype"]["ADD"]["questions"] >= 30 and report["by_qtype"]["NEG"]["questions"] >= 30
    assert report["questions"] == sum(k["questions"] for k in report["kinds"].values())
    assert report["kinds"]["uniform"]["by_qtype"]["SUB"] == {"questions": 30, "wrong": 30}
    assert 0 <= report["accuracy"] < 1 and report["wrong"] > 0


def test_eval_table_shows_each_kind_and_qtype(shipped, monkeypatch, capsys):
    code, out, _ = arithlens_here(monkeypatch, capsys, "eval", "--model", "mix", "--questions", "20", "--kind", "uniform",
                           "--precision", "fp32", "--quiet")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("model mix_d2_l1_h1_t1K_s000001")
    assert [line.split()[:3] for line in lines[2:5]] == [["uniform", q, "20"] for q in ("ADD", "SUB", "NEG")]
    assert "first failures (model vs true):" in lines


@pytest.mark.parametrize("model_arg", ["xyz", "corrupt"])
def test_eval_of_unknown_or_corrupt_model_is_one_line_exit_2_no_output(model_arg, shipped, tmp_path, monkeypatch,
                                                                       capsys):
    if model_arg == "corrupt":
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "model.safetensors").write_bytes(b"\x00not a safetensors file")
        model_arg = str(bad)
    out_file = tmp_path / "report.json"
    code, out, err = arithlens_here(monkeypatch, capsys, "eval", "--model", model_arg, "--questions", "5", "--quiet",
                             "--out", str(out_file))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    if model_arg == "xyz":
        assert err == ("error: unknown model 'xyz': not a shipped model (mix_d2_l1_h1_t1K_s000001) or an existing "
                       "path (checkpoints are directories, .safetensors or .pth/.pt files)\n")
    else:
        assert "is corrupt or unreadable" in err
    assert not out_file.exists()


def test_convert_of_corrupt_pth_is_one_line_exit_2_and_creates_nothing(tmp_path, monkeypatch, capsys):
    source = tmp_path / "add_d6_l2_h3_t15K_s372001.pth"
    source.write_bytes(b"garbage")
    code, out, err = arithlens_here(monkeypatch, capsys, "convert", str(source), str(tmp_path / "out"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "is corrupt" in err
    assert not (tmp_path / "out").exists()


def test_convert_writes_our_format_and_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    spec = ModelSpec.parse("add_d2_l1_h2_t15K_s372001", d_model=16, d_head=8, d_mlp=32)
    source = tmp_path / f"{spec.name}.pth"
    torch.save(HookedTransformer(spec, seed=3).state_dict(), source)
    code, out, _ = arithlens_here(monkeypatch, capsys, "convert", str(source), str(tmp_path / "out"))
    assert code == 0 and out.startswith(f"{source} -> {tmp_path / 'out'}: {spec.name} (spec from file name)")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.json", "model.safetensors"]
    code, _, err = arithlens_here(monkeypatch, capsys, "convert", str(source), str(tmp_path / "out"))
    assert code == 2 and "pass --force" in err


def test_stress_set_shares_the_top_digits_and_is_the_model_cards_set_at_the_default_seed():
    from arithlens.arith.vocab import MINUS, PLUS
    from arithlens.model.evaluate import stress

    batch = stress(6, 2000)
    a, b = batch.a, batch.b
    assert (a // 10**5 == b // 10**5).all()  # every pair shares at least its top digit
    assert 0.15 < (a // 10 == b // 10).mean() < 0.25  # all five top digits: m = 5 (1 in 5), or chance
    assert 0.55 < (a // 10**3 == b // 10**3).mean() < 0.65  # three or more: m in 3..5 (3 in 5), or chance
    assert set(np.unique(batch.op)) == {PLUS, MINUS}
    # The model cards' 200,000 (numpy default_rng(11)): 100,113 of them are additions (the adder's share).
    full = stress(6, 200_000)
    assert int((full.op == PLUS).sum()) == 100_113
    assert full.question_string(0) == stress(6, 200_000).question_string(0)
    assert stress(6, 2000, seed=1).question_string(0) != batch.question_string(0)
    assert len(stress(1, 100)) == 0
