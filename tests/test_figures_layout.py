"""The node-study figures take fixed margins instead of a layout engine (half their drawing time): every title,
label, tick and legend must still lie on the canvas, axes must not overlap, and saving draws each figure once."""

from test_node_study import SMALL, pair_head_model

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from arithlens.analysis.node_study import study_node
from arithlens.report.figures import fixed_margins, new_figure, text_width
from arithlens.report.node_figures import node_figure_jobs, attention_figure, grid_figure, necessity_figure, pca_figure

DRAW = {"pca": pca_figure, "attention": attention_figure, "necessity": necessity_figure, "grid": grid_figure}


@pytest.fixture(scope="module")
def study() -> dict:
    return study_node(pair_head_model(), "P18L0H0", SMALL).data


def _visible_texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("name", list(DRAW))
def test_every_text_of_a_node_figure_lies_on_the_canvas(study, name):
    fig = DRAW[name](study)
    assert fig.get_layout_engine() is None
    fig.draw_without_rendering()  # ticks and colour bars placed as they are saved
    assert len(_visible_texts(fig)) > 5
    # The box around everything drawn (titles, tick labels, legends, colour bars), in inches.
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())
    width, height = fig.get_size_inches()
    slack = 0.01  # a pixel's rounding at the edge
    assert drawn.x0 >= -slack and drawn.y0 >= -slack, (name, drawn)
    assert drawn.x1 <= width + slack and drawn.y1 <= height + slack, (name, drawn, width, height)


@pytest.mark.parametrize("name", list(DRAW))
def test_the_axes_of_a_node_figure_do_not_overlap(study, name):
    fig = DRAW[name](study)
    fig.draw_without_rendering()
    boxes = [ax.get_position() for ax in fig.axes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap_w = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_h = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_w <= 1e-9 or overlap_h <= 1e-9, (name, a, b)


def test_saving_a_node_figure_draws_it_once_per_format(study, tmp_path, monkeypatch):
    draws = []
    original = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda self, renderer: (draws.append(1), original(self, renderer))[1])
    for name, (fn, args) in node_figure_jobs(study, tmp_path, ("png", "svg")).items():
        draws.clear()
        paths = fn(*args)
        assert [p.suffix for p in paths] == [".png", ".svg"]
        assert len(draws) == 2, name  # no measuring pass before each format's drawing


def test_fixed_margins_place_the_subplots_in_inches():
    fig = fixed_margins(new_figure(10, 5), left=1.0, right=0.5, top=0.25, bottom=1.0)
    ax = fig.subplots()
    x0, y0, x1, y1 = ax.get_position().extents
    assert (x0 * 10, (1 - x1) * 10, (1 - y1) * 5, y0 * 5) == pytest.approx((1.0, 0.5, 0.25, 1.0), abs=1e-12)


def test_text_width_grows_with_the_text_and_the_font():
    fig = new_figure(4, 3)
    short, long = text_width(fig, ["ADD T8"], 7), text_width(fig, ["ADD T8 no carry  n=300, clean 0.0%"], 7)
    assert 0 < short < long < 3.0
    assert text_width(fig, ["ADD T8"], 14) == pytest.approx(2 * short, rel=0.1)
    assert text_width(fig, [], 7) == 0.0


@pytest.mark.parametrize("name", list(DRAW))
def test_fixed_title_heights_draw_the_pixels_of_matplotlibs_own_placement(study, name, monkeypatch):
    """Titles set at TITLE_Y skip matplotlib's search for a free height (a quarter of the drawing time); nothing
    is drawn over the axes' top edge, so the search found that height anyway: the PNGs are identical."""
    import io

    import numpy as np
    from matplotlib.axes import Axes
    from PIL import Image

    def pixels(fig: Figure) -> np.ndarray:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=60)
        return np.asarray(Image.open(buf))

    fixed = DRAW[name](study)
    assert all(not ax._autotitlepos for ax in fixed.axes if ax.get_title())  # the fast path is the one taken
    original = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda self, label, *a, y=None, **kw: original(self, label, *a, **kw))
    placed = DRAW[name](study)
    assert any(ax._autotitlepos for ax in placed.axes if ax.get_title()) or not any(ax.get_title() for ax in placed.axes)
    np.testing.assert_array_equal(pixels(fixed), pixels(placed))
