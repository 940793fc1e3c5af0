"""Full useful-node sweep (every head and MLP layer at every position): the engine vs one full forward per node.

    PYTHONPATH=src python benchmarks/bench_useful.py [--model DIR] [--questions 256] [--threads 1] [--rounds 6]

Same questions, same means, same tags (asserted node by node); both timed in interleaved rounds in one
process, so background load hits both alike. The model: --model, else the trained run at
runs/mix_s372001 (its final checkpoint, else the latest training snapshot), else the shipped default,
else a random 3-layer d_model 128 mixed model. A model that gets more than 5% of the varied questions
wrong (a random or half-trained one) is scored against its own clean predictions on all of them, so the
failure criterion still separates nodes; a trained model drops its wrong questions first, as
`arithlens useful` does. Also prints the work each way in position-layers (one layer at one position for
the whole batch), which is what the ratio tracks on a compute-bound CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# As the CLI does (arithlens.cli.main): a short OpenMP spin, so idle torch threads do not burn a busy core.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import torch  # noqa: E402

from arithlens.analysis.nodes import Node
from arithlens.analysis.useful import (
    behaviour_tags,
    clean_check,
    find_useful,
    node_ablation,
    node_hooks,
    residual_hooks,
    varied_questions,
)
from arithlens.errors import ArithLensError
from arithlens.interventions import Engine, compute_means, run_with_interventions, score
from arithlens.model import HookedTransformer, ModelSpec, load_checkpoint, model_from_state_dict

RUN = Path(__file__).resolve().parent.parent / "runs" / "mix_s372001"
RANDOM_SPEC = ModelSpec.parse("mix_d6_l3_h4_t10K_s372001", d_model=128, d_head=32)


def load_model(path: str | None) -> tuple[HookedTransformer, str]:
    if path:
        return load_checkpoint(path).model, path
    if (RUN / "model.safetensors").exists():
        return load_checkpoint(RUN).model, str(RUN)
    state_file = RUN / "train_state.safetensors"
    if state_file.exists():  # training still running: its latest resumable state holds the weights
        from safetensors import safe_open

        with safe_open(str(state_file), framework="pt") as f:
            meta = json.loads(f.metadata()["meta"])
            state = {k[6:]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
        spec = ModelSpec.from_dict(meta["spec"])
        return model_from_state_dict(state, spec), f"{state_file} (step {meta['step']})"
    try:
        from arithlens.model.zoo import resolve_model

        path = resolve_model(None)
        return load_checkpoint(path).model, f"the shipped default {path}"
    except (ImportError, ArithLensError):
        return HookedTransformer(RANDOM_SPEC, seed=1), "random weights"


def layer_costs(spec) -> tuple[float, float, float]:
    """Shares of one layer's matmul work at one position: (q, k and v, q/k/v together), the rest being the
    output projection and the MLP."""
    d, hd = spec.d_model, spec.n_heads * spec.d_head
    qkv, rest = 3 * d * hd, hd * d + 2 * d * spec.d_mlp
    return d * hd / (qkv + rest), 2 * d * hd / (qkv + rest), qkv / (qkv + rest)


def work_units(node: Node, spec) -> tuple[float, float]:
    """(engine, full forward) matmul work for one node ablation in position-layers (one layer at one position
    for the whole batch), following the engine's plan: position p alone from the node's layer up; then the
    later positions from the next layer, where their q, k and v are the clean ones (reused), and in the last
    layer only keys and values except at answer positions."""
    n_layers, n_ctx, answer = spec.n_layers, spec.n_ctx, spec.layout.answer_logit_positions
    _, kv, qkv = layer_costs(spec)
    full = n_layers * n_ctx
    p, layer = node.position, node.layer
    if p >= answer.stop or (layer == n_layers - 1 and p not in answer):
        return 0.0, full
    later = range(p + 1, answer.stop)
    if layer == n_layers - 1 or not any(q in answer for q in later):
        return float(n_layers - layer), full
    work = float(n_layers - layer)
    for upper in range(layer + 1, n_layers):
        for q in later:
            if upper == n_layers - 1 and q not in answer:
                work += 0.0 if upper == layer + 1 else kv  # unchanged at the first layer; keys and values later
            else:
                work += 1.0 - (qkv if upper == layer + 1 else 0.0)
    return work, full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint directory (default: see above)")
    ap.add_argument("--questions", type=int, default=256, help="random questions before the curated set")
    ap.add_argument("--threads", type=int, default=1,
                    help="cores to use: torch threads for the full forwards, worker threads for the engine")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (node groups)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, source = load_model(args.model)
    model.eval()
    spec = model.spec
    questions = varied_questions(spec, count=args.questions)
    check = clean_check(model, questions)
    if len(check.dropped) <= 0.05 * len(questions):
        questions, targets, scoring = check.kept, None, f"true answers ({len(check.dropped)} wrong dropped)"
    else:
        tokens = questions.torch_tokens()
        with torch.inference_mode():
            targets = model(tokens, logit_positions=spec.layout.answer_logit_positions).argmax(-1)
        scoring = f"the model's own clean predictions ({len(check.dropped)}/{len(questions)} answers wrong)"
    tokens = questions.torch_tokens()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); model {spec.name} from {source}")
    print(f"  d_model {spec.d_model}, {spec.n_layers} layers x {spec.n_heads} heads, d_mlp {spec.d_mlp}; "
          f"{len(questions)} questions scored against {scoring}")

    means = compute_means(model, questions, residual_hooks(spec) + node_hooks(spec))
    nodes = [Node(p, layer, False, h) for p in range(spec.n_ctx) for layer in range(spec.n_layers)
             for h in range(spec.n_heads)]
    nodes += [Node(p, layer, True, -1) for p in range(spec.n_ctx) for layer in range(spec.n_layers)]
    nodes.sort(key=lambda n: (n.position, n.layer, n.is_mlp, n.num))
    ablations = [node_ablation(means, n) for n in nodes]

    t0, c0 = time.perf_counter(), time.process_time()
    engine = Engine(model, tokens, targets=targets)
    # wall-clock and process CPU seconds; the engine's clean run counts
    seconds = {"engine": time.perf_counter() - t0, "full": 0.0}
    cpu = {"engine": time.process_time() - c0, "full": 0.0}
    tags: dict[str, list] = {"engine": [None] * len(nodes), "full": [None] * len(nodes)}
    fails: dict[str, list] = {"engine": [None] * len(nodes), "full": [None] * len(nodes)}
    for r in range(args.rounds):
        group = range(r, len(nodes), args.rounds)  # each round a spread of positions and layers
        for way in ("engine", "full") if r % 2 == 0 else ("full", "engine"):
            t0, c0 = time.perf_counter(), time.process_time()
            if way == "engine":  # on --threads worker threads of one torch thread each
                outs = engine.outcomes([ablations[i] for i in group], workers=args.threads)
            else:  # each forward on --threads torch threads
                outs = [score(run_with_interventions(model, tokens, ablations[i]), engine.targets) for i in group]
            for i, out in zip(group, outs):
                fails[way][i] = out.fails
                tags[way][i] = behaviour_tags(out, questions)
            seconds[way] += time.perf_counter() - t0
            cpu[way] += time.process_time() - c0
    mismatched = [n.name for i, n in enumerate(nodes)
                  if tags["engine"][i] != tags["full"][i] or not (fails["engine"][i] == fails["full"][i]).all()]
    assert not mismatched, f"engine and full forward disagree at {mismatched[:5]}"

    useful = [n for i, n in enumerate(nodes) if tags["engine"][i]]
    units = [work_units(n, spec) for n in nodes]
    unit_ratio = sum(f for _, f in units) / sum(e for e, _ in units)
    print(f"\nfull sweep: {len(nodes)} node ablations ({spec.n_ctx} positions x {spec.n_layers} layers x "
          f"{spec.n_heads + 1}); {len(useful)} nodes fail questions "
          f"({sum(n.is_head for n in useful)} heads, {sum(n.is_mlp for n in useful)} MLP layers); "
          f"tags identical: yes")
    print(f"  {'':26s} {'wall s':>8s} {'CPU s':>8s}")
    print(f"  {'one full forward per node':26s} {seconds['full']:8.2f} {cpu['full']:8.2f}")
    print(f"  {'engine':26s} {seconds['engine']:8.2f} {cpu['engine']:8.2f}")
    print(f"  ratio: {seconds['full'] / seconds['engine']:.2f}x wall, {cpu['full'] / cpu['engine']:.2f}x CPU "
          f"(matmul work ratio {unit_ratio:.2f}x: the most the engine's plan can give)")

    if targets is None:  # the procedure `arithlens useful` runs: positions first, then nodes at useful positions
        t0, c0 = time.perf_counter(), time.process_time()
        result = find_useful(model, questions)
        spent, spent_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"\n`arithlens useful` procedure (means, position sweep, nodes at the {len(result.useful_positions)} "
              f"useful positions, attention tags): {spent:.2f} s wall, {spent_cpu:.2f} s CPU -> "
              f"{len(result.nodes.heads)} heads, {len(result.nodes.mlps)} MLP layers")


if __name__ == "__main__":
    main()
