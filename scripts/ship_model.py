"""Ship a trained model: copy its weights into `src/arithlens/models/<name>/` with a model card built from the run.

    arithlens train --spec mix_d6_l3_h4_t10K_s372002 ... --config CONFIG --out runs/mix_s2
    arithlens eval --model runs/mix_s2 --json --out runs/mix_s2_eval.json
    python scripts/ship_model.py runs/mix_s2 runs/mix_s2_eval.json --config CONFIG --machine "..."

The card is the run's `model.json` (spec and training record) plus the evaluation (`accuracy`, with its
`stress` row repeated as the card's `stress` entry), the command that reproduces it and the weights' sha256.
Refuses a model that is not exact on every question of the evaluation unless --inexact (a seed kept so that a
study over every seed of a recipe is not a pick of the exact ones; its card then says `"exact": false`), and an
existing folder unless --force.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "src" / "arithlens" / "models"


def card(run: Path, evaluation: dict, config: Path, machine: str | None) -> dict:
    data = json.loads((run / "model.json").read_text())
    name = data["spec"]["name"]
    training = data["training"]
    if machine:
        training["machine"] = machine
    shipped_config = f"src/arithlens/models/{name}/train_config.json"
    run_words = str(training.get("command", "")).split()
    threads = run_words[run_words.index("--threads") + 1] if "--threads" in run_words[:-1] else "1"
    device = " --device cuda" if str(training.get("device", "cpu")).startswith("cuda") else ""
    command = (f"arithlens train --spec {name} --d-model {data['spec']['d_model']} --d-head {data['spec']['d_head']} "
               f"--config {shipped_config} --out runs/{name}{device} --threads {threads}")
    training["command_run"] = training.get("command")
    training["command"] = command
    training["weights_sha256"] = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    evaluation = dict(evaluation, path=f"src/arithlens/models/{name}")
    out = {"format": data["format"], "spec": data["spec"], "training": training, "accuracy": evaluation,
           "reproduce": command, "train_config": json.loads(config.read_text())}
    stress = evaluation.get("kinds", {}).get("stress")
    if stress:
        out["stress"] = {"what": "questions whose operands share their top m digits (m uniform in 1..n-1), part "
                                 "of the default `arithlens eval` suite", "questions": stress["questions"],
                         "wrong": stress["wrong"], "failures": stress["failures"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the training run's folder (model.safetensors, model.json)")
    parser.add_argument("evaluation", type=Path, help="the JSON `arithlens eval --json` wrote for that run")
    parser.add_argument("--config", type=Path, required=True, help="the train --config JSON the run used")
    parser.add_argument("--machine", help="a description of the machine that trained it, for the card")
    parser.add_argument("--models-dir", type=Path, default=MODELS)
    parser.add_argument("--force", action="store_true", help="replace an existing shipped folder")
    parser.add_argument("--inexact", action="store_true", help="ship a model with wrong answers, marked in its card")
    args = parser.parse_args(argv)
    evaluation = json.loads(args.evaluation.read_text())
    if not evaluation.get("questions") or not isinstance(evaluation.get("wrong"), int) or (
            evaluation["wrong"] != 0 and not args.inexact):
        print(f"error: {args.evaluation} reports {evaluation.get('wrong')} wrong of {evaluation.get('questions')}: "
              "only exact models ship (--inexact ships it marked as such)", file=sys.stderr)
        return 2
    data = card(args.run, evaluation, args.config, args.machine)
    data["exact"] = evaluation["wrong"] == 0
    name = data["spec"]["name"]
    if evaluation.get("model") not in (None, name):
        print(f"error: the evaluation is of {evaluation['model']}, the run is {name}", file=sys.stderr)
        return 2
    target = args.models_dir / name
    if target.exists() and not args.force:
        print(f"error: {target} exists (--force replaces it)", file=sys.stderr)
        return 2
    stage = args.models_dir / f".{name}.ship"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copyfile(args.run / "model.safetensors", stage / "model.safetensors")
    (stage / "train_config.json").write_text(json.dumps(data.pop("train_config")) + "\n")
    (stage / "model.json").write_text(json.dumps(data, indent=1) + "\n")
    if target.exists():
        shutil.rmtree(target)
    stage.rename(target)
    print(f"shipped {name}: {evaluation['questions']:,} questions, {evaluation['wrong']:,} wrong, "
          f"sha256 {data['training']['weights_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
