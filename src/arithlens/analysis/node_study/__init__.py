"""The node study: is one head doing several jobs? (the founding notebook's question; `arithlens node`)

A package by question: `attention`, `necessity`, `sufficiency`, `representation` (with shared directions and
the operator grid), `verdict` (the rules below, as data); `runs` (the node as a site, clean runs and their
cache), `options` (thresholds), `study` (the steps in order). The verdict's words are `report.node_text`'s.

For one head (`P18L0H0`) or whole MLP layer (`P18L0MLP`) of an addition/subtraction model, on seeded
question sets, with one forward pass per question set (plus the cheap partial runs of the engine; a
necessity set larger than `necessity.CHUNK` runs in chunks, with one more pass, up to the node's layer only, to take
the node's activations; heads of one layer studied at one digit in a row share these runs, `study_node`'s companions):

1. Attention (heads): mean attention from the node's position to every earlier position, per qtype, on a
   uniform set mixed like the training data. The node computes answer digit k = layout.answer_digit_at(pos)
   (A2 at P18); its candidate digits are k-1 (carry/borrow: A{k-1}.SC / .MB / .NB), k (base: SA / MD / ND)
   and whatever operand digit pairs (Dj, D'j) the head actually attends to. The *study digit* t is the
   most-attended pair when it holds >= ATTEND_MIN of the attention, else k-1 (or `digit=` if given).
2. Necessity: tricase sets at digit t with the qtype fixed by the higher digits (high="decide", so
   carries and borrows do leave digit t), `questions` per qtype x class, split again by the real
   carry/borrow out of t. The node is replaced by (a) its mean over the mixed set, (b) its value on a random
   question of the mixed set (resampling), (c) the mean over this qtype's questions of the *same* real
   carry class and (d) of the *other* class. Per group: failure rate (the useful-node failure criterion) with a
   Wilson 95% CI and the wrong rate of every answer token. (c) and (d) test what the node carries:
   if it carries the carry predicate, (c) breaks little and (d) breaks the digit t+1.
   `mean_position`: where the mixed-set mean lies on each qtype's no-carry (0) -> carry (1) axis; it
   explains why mean ablation may break only one class (or none) of a qtype.
3. Sufficiency: `pairs` clean/store pairs per qtype that differ only in the digit-t pair, chosen so the
   real carry/borrow out of t flips (carry-in and every other digit kept). The node's activation is
   patched from store into clean; success = every answer token equals the clean answer with digit t+1
   recomputed (task layer) with the store's carry/borrow. Clean questions are ones the model gets right.
   Control: the same patch through every other head of the layer.
4. Representation: the node's output (hook_z . W_O, i.e. hook_result; for an MLP hook_post . W_out) on
   `per_case` rows per qtype x class. Per qtype: PCA (EVR), silhouette of the T classes and of the real
   carry, and 5-fold cross-validated logistic probes (with a `permutations` label-shuffle
   null) for the real carry/borrow out of t and for the pair predicate (ADD Dt+D't >= 10, SUB Dt < D't,
   NEG Dt > D't). A node that sees only (Dt, D't) cannot know the carry into t, so the real-carry probe
   is bounded by `carry_ceiling_from_pair` (the best any function of the pair does).
5. Shared or separate: cosines between the qtypes' carry-vs-no-carry class-mean directions and between
   their probe weight vectors (in whitened output coordinates), each with a null from shuffled labels;
   probe transfer (trained on one qtype, scored on another: near 1 or near 0 means one axis, near 0.5
   different axes).
6. Operator blindness (§14.2 item 6): the 10x10 grid of mean outputs over (Dt, D't) per qtype and the
   share of output variance explained by the pair, by the qtype and by pair x qtype cells.

Decision rules (constants below):
- encodes(op): max(real-carry probe, pair-predicate probe) accuracy >= PROBE_MIN with permutation
  p <= P_MAX (so it needs >= 99 permutations). Gives the PCA tag `Math.Add:A{t}.SP` /
  `Math.Sub:A{t}.MP` / `Math.Neg:A{t}.NP`.
- necessary(op): the rate of a wrong A(t+1) (the digit a carry/borrow out of t changes) under resample
  ablation, over the qtype's questions, has a Wilson lower bound above the clean rate's upper bound, and
  exceeds the clean rate by at least NECESSARY_MIN (5 points): with 3,000 questions per qtype a 1% effect is
  significant, but a qtype whose answers break that rarely does not rely on the node for the job.
- sufficient(op): patching success (exact answer) >= SUFFICIENT_MIN.
- role(op) = encodes(op) and (necessary(op) or sufficient(op)); the node computes A{t}.SC for ADD,
  A{t}.MB for SUB, A{t}.NB for NEG where it has the role.
- polysemantic: a role for >= 2 qtypes. Shared direction: every pair of role qtypes has
  |cos(class-mean directions)| >= SHARED_COS_MIN with null p <= P_MAX. Operator-blind: pair x qtype
  cells explain at most OPERATOR_BLIND_MAX more variance than the pair alone.
- A study digit t equal to k (the node reads the base pair of the digit it predicts) gets no role: a
  carry/borrow out of t changes A(t+1), which is predicted before the node's position.
"""

from arithlens.analysis.node_study.options import (
    ABLATIONS, ATTEND_MIN, CARRY, NECESSARY_MIN, OPERATOR_BLIND_MAX, OPS, P_MAX, PAIR_RULE, PCA_TAG, PROBE_MIN,
    SHARED_COS_MIN, SUFFICIENT_MIN, WORD, StudyOptions,
)
from arithlens.analysis.node_study.runs import StudyCache
from arithlens.analysis.node_study.study import NodeStudy, study_node
from arithlens.analysis.node_study.sufficiency import expected_answer
from arithlens.analysis.node_study.verdict import decide, pair_geometry

__all__ = [
    "ABLATIONS", "ATTEND_MIN", "CARRY", "NECESSARY_MIN", "OPERATOR_BLIND_MAX", "OPS", "P_MAX", "PAIR_RULE", "PCA_TAG",
    "PROBE_MIN", "SHARED_COS_MIN", "SUFFICIENT_MIN", "WORD", "NodeStudy", "StudyCache", "StudyOptions", "decide",
    "expected_answer", "pair_geometry", "study_node",
]
