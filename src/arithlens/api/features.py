"""Dictionary features through the front door: train a sparse autoencoder on a node's site, or ask the founding
question of its features."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arithlens.model.transformer import HookedTransformer


def _sae_options(arch, size, k, l1, steps, questions, eval_questions, permutations, seed, sweep, digit=None,
                 trainer="arithlens"):
    from arithlens.analysis.features.study import SAEOptions

    return SAEOptions(arch=arch, size=size, k=k, l1=l1, steps=steps, questions=questions,
                      eval_questions=eval_questions, permutations=permutations, seed=seed, sweep=sweep, digit=digit,
                      trainer=trainer)


def check_sae(node: str, spec=None, *, digit: int | None = None, **options) -> None:
    """Every `sae` / `feature_study` argument checked before any work (`options` as theirs); with `spec` (the
    model's), the site is also checked against the model. The CLI calls this before it loads or writes anything."""
    from arithlens.analysis.features.activations import Site
    from arithlens.analysis.nodes import Node

    if "@" not in node:
        Node.parse(node)  # a malformed name fails first, with the parser's message
    names = ("arch", "size", "k", "l1", "steps", "questions", "eval_questions", "permutations", "seed", "sweep")
    _sae_options(*(options[n] for n in names), digit, options.get("trainer", "arithlens"))
    if spec is not None:
        Site.parse(node, spec)


def sae(model: HookedTransformer, node: str, *, arch: str = "topk", size: int | None = None, k: int | None = None,
        l1: float = 0.05, steps: int = 3000, questions: int = 20_000, eval_questions: int = 3000,
        permutations: int = 100, seed: int = 0, sweep: bool = False, trainer: str = "arithlens",
        progress: Callable[[str], None] | None = None):
    """A sparse autoencoder (`arch` topk, batchtopk or l1) trained on a node's output site (`"P18L0H3"`: its
    `hook_z` slice at P18; `"P18L0MLP"`: `hook_post` at P18; or `"blocks.1.hook_resid_pre@P18"`) from fresh
    uniform + enriched questions, with its quality (explained variance, MSE, L0, dead / dense features, spliced
    exact accuracy per qtype), every live feature's label AUROCs (permutation null, intervals) and, with
    `sweep`, the L0 / explained-variance Pareto points. `result.save_dictionary(dir)` writes SAELens's format.
    `trainer="saelens"` trains with SAELens's own trainer (the `sae` extra). Deterministic for `seed`."""
    import dataclasses

    from arithlens.analysis.features.study import dictionary_record, train
    from arithlens.results import FeatureDictionary

    model.eval()
    options = _sae_options(arch, size, k, l1, steps, questions, eval_questions, permutations, seed, sweep,
                           trainer=trainer)
    say = progress or (lambda _m: None)
    trained = train(model, node, options, say)
    result = FeatureDictionary.from_dict(dictionary_record(model, trained, options, say))
    return dataclasses.replace(result, sae=trained.sae)


def feature_study(model: HookedTransformer, node: str, *, arch: str = "topk", size: int | None = None,
                  k: int | None = None, l1: float = 0.05, steps: int = 3000, questions: int = 20_000,
                  eval_questions: int = 3000, permutations: int = 100, seed: int = 0, sweep: bool = False,
                  digit: int | None = None, trainer: str = "arithlens",
                  progress: Callable[[str], None] | None = None):
    """The founding question from below (`sae` plus): at the carry digit (`digit`, default the one into the
    answer digit the node's position predicts), how many features carry the carry, each borrow and the operand
    digits, whether one feature serves carry and borrow at once, what ablating or flipping each matched feature
    does to which answer digit of which qtype (error term kept), and beside them a logistic probe and a
    difference-of-means direction (its own ablation and flip). `result.features` is the node study's
    "features" part."""
    import dataclasses

    from arithlens.analysis.features.study import study_features
    from arithlens.results import FeatureStudy

    model.eval()
    options = _sae_options(arch, size, k, l1, steps, questions, eval_questions, permutations, seed, sweep, digit,
                           trainer)
    data, trained = study_features(model, node, options, progress)
    result = FeatureStudy.from_dict(data)
    return dataclasses.replace(result, dictionary=dataclasses.replace(result.dictionary, sae=trained))
