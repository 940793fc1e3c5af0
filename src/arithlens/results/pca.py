"""PCA of a node's output, each row with its question and labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from arithlens.results._base import _hidden, _JsonResult


@dataclass(frozen=True)
class NodePCA(_JsonResult):
    """PCA of a node's output (its write to the residual stream) on a question batch, row by row labelled."""

    node: str
    model: str
    evr: tuple[float, ...]
    scores: tuple[tuple[float, ...], ...] = field(repr=False)  # (rows, components)
    question: tuple[str, ...] = field(repr=False)
    answer: tuple[str, ...] = field(repr=False)
    qtype: tuple[str, ...] = field(repr=False)
    case: tuple[int | None, ...] = field(repr=False)  # tricase class 8/9/10 when the batch has one
    carry: tuple[int | None, ...] = field(repr=False)  # real carry/borrow out of the tricase digit
    digit: int | None = None  # the tricase digit, when the batch has one
    data: dict = _hidden()

    @property
    def n(self) -> int:
        return len(self.question)

    def array(self) -> np.ndarray:
        return np.asarray(self.scores, dtype=float).reshape(self.n, -1)

    def plot(self, interactive: bool = False, title: str | None = None):
        from arithlens.report.result_views import pca_plot

        return pca_plot(self, interactive=interactive, title=title)

    def _repr_html_(self) -> str:
        from arithlens.report.result_views import pca_html

        return pca_html(self)


# ---------------------------------------------------------------------------------------------------
# Useful nodes, searches, the whole analysis
