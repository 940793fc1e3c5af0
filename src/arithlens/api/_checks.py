"""The API's argument checks that need a model: the model itself, a node name, a question batch, a node set."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from arithlens.arith.questions import QType, QuestionBatch
from arithlens.errors import ArgumentTypeError, ArithLensError
from arithlens.results import UsefulNodes

if TYPE_CHECKING:
    from arithlens.analysis.nodes import Node
    from arithlens.model.transformer import HookedTransformer


def check_model(model) -> None:
    from arithlens.model.transformer import HookedTransformer

    if not isinstance(model, HookedTransformer):
        raise ArgumentTypeError(f"expected a model from arithlens.load_model(), not {type(model).__name__}")


def check_node(model: HookedTransformer, node) -> Node:
    """`node` (a name or a Node) checked against the model: one-line errors, never an AttributeError later."""
    from arithlens.analysis.nodes import Node as NodeName

    if isinstance(node, NodeName):
        return NodeName.for_model(node.name, model.spec)
    return NodeName.for_model(node, model.spec)


def check_batch(model: HookedTransformer, batch) -> None:
    """A non-empty question batch of the model's digit count and of question types the model was trained on."""
    if not isinstance(batch, QuestionBatch):
        raise ArgumentTypeError(f"expected a QuestionBatch (arithlens.questions(...)), not {type(batch).__name__}")
    spec = model.spec
    if len(batch) == 0:
        raise ArithLensError("the question batch is empty: give at least one question")
    if batch.n_digits != spec.n_digits:
        raise ArithLensError(f"the batch has {batch.n_digits}-digit questions but {spec.name} takes "
                             f"{spec.n_digits}-digit ones: build it with n_digits={spec.n_digits}")
    trained = {QType.ADD} if spec.perc_add > 0 else set()
    trained |= {QType.SUB, QType.NEG} if spec.perc_sub > 0 else set()
    trained |= {QType.MUL} if spec.perc_mul > 0 else set()
    foreign = sorted({QType(int(q)) for q in np.unique(batch.qtype)} - trained)
    if foreign:
        raise ArithLensError(f"the batch holds {', '.join(q.name for q in foreign)} questions, which {spec.name} "
                             f"was not trained on (it does {', '.join(q.name for q in sorted(trained))})")


def node_set(model: HookedTransformer, nodes) -> list[Node]:
    """A UsefulNodes result or node names as the model's Nodes (a result of another model is refused)."""
    from arithlens.analysis.nodes import Node
    from arithlens.validate import check_same_model

    if isinstance(nodes, UsefulNodes):
        check_same_model(nodes.model, model.spec, "the node set")
    elif isinstance(nodes, (str, bytes)) or not isinstance(nodes, Iterable):
        raise ArgumentTypeError(f"nodes must be a UsefulNodes result or a list of node names, not {nodes!r}")
    names = [n.name for n in nodes.nodes] if isinstance(nodes, UsefulNodes) else list(nodes)
    return [n if isinstance(n, Node) else Node.for_model(str(n), model.spec) for n in names]
