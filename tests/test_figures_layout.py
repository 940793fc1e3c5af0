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


# ---------------------------------------------------------------------------------------------------
# FixedTicks, tight boxes without a measuring drawing, the paused collector: cheaper, the same pixels


def _png_pixels(fig: Figure, dpi: int = 120, **kwargs):
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **kwargs)
    return np.asarray(Image.open(buf))


def _matplotlib_ticks(monkeypatch):
    """Make the node figures tick as matplotlib does by itself (what they did before FixedTicks)."""
    from arithlens.report import node_figures

    def native(ax, which, locs, labels=None):
        (ax.set_xticks if which == "x" else ax.set_yticks)(list(locs), labels)

    monkeypatch.setattr(node_figures, "fixed_ticks", native)
    monkeypatch.setattr(node_figures, "frozen_ticks", lambda ax, which: None)


@pytest.mark.parametrize("name", list(DRAW))
def test_fixed_ticks_draw_the_pixels_of_matplotlibs_own_ticks(study, name, monkeypatch):
    """Marks, tick labels and the axis labels placed below/left of them: the same PNG, at the saving dpi and
    another, as when matplotlib makes a Tick per place."""
    import numpy as np

    from arithlens.report.figures import FixedTicks

    fast = DRAW[name](study)
    assert fast.findobj(FixedTicks)  # the cheap path is the one taken
    _matplotlib_ticks(monkeypatch)
    native = DRAW[name](study)
    assert not native.findobj(FixedTicks)
    for dpi in (120, 75):
        np.testing.assert_array_equal(_png_pixels(fast, dpi), _png_pixels(native, dpi))


@pytest.mark.parametrize("inverted", [False, True])
def test_fixed_ticks_match_set_ticks_with_labels_hidden_and_places_outside_the_view(inverted):
    import numpy as np

    from arithlens.report.figures import fixed_ticks

    def draw(fast: bool) -> Figure:
        fig = new_figure(4, 3)
        axes = fig.subplots(1, 2, sharey=True)  # the second axes' y labels hidden, its marks kept
        for ax in axes:
            ax.plot([0, 3], [0, 9], color="tab:blue")
            ax.set_xlim(-0.5, 2.5)  # the tick at 3 lies outside: not drawn
            ax.set_ylim((9.5, -0.5) if inverted else (-0.5, 9.5))
            ax.set_xlabel("x label")
            ax.set_ylabel("y label")
            ax.tick_params(labelsize=6)
            names = ["zero", "one", "two", "three"]
            if fast:
                fixed_ticks(ax, "x", range(4), names)
                fixed_ticks(ax, "y", [0, 4.5, 9])
            else:
                ax.set_xticks(range(4), names)
                ax.set_yticks([0, 4.5, 9])
        return fig

    fast, native = draw(True), draw(False)
    assert [t.get_text() for t in fast.axes[0].findobj(Text) if t.get_text() in ("0.0", "4.5", "9.0")] \
        == ["0.0", "4.5", "9.0"]  # the axis's formatter wrote the labels not given
    np.testing.assert_array_equal(_png_pixels(fast), _png_pixels(native))


def test_frozen_ticks_keep_the_view_and_leave_offset_axes_to_matplotlib():
    from arithlens.report.figures import FixedTicks, frozen_ticks

    fig = new_figure(4, 3)
    ax = fig.subplots()
    ax.scatter([0.0, 1.3], [1e6, 1e6 + 3])
    xlim = ax.get_xlim()
    assert isinstance(frozen_ticks(ax, "x"), FixedTicks)
    assert ax.get_xlim() == xlim and not ax.get_autoscalex_on()
    assert frozen_ticks(ax, "y") is None  # an offset (1e6) only the axis draws
    assert ax.get_autoscaley_on()


@pytest.mark.parametrize("kind", ["map", "table"])
def test_a_tight_png_is_measured_without_a_drawing_and_keeps_matplotlibs_pixels(kind, tmp_path, monkeypatch):
    """save_figure crops a PNG to the box matplotlib's `bbox_inches="tight"` finds, but draws the figure once
    (a table, which lays itself out at each measurement, included)."""
    import numpy as np
    from matplotlib.image import imread
    from test_quanta_maps import MAPS, NODES, SPEC

    from arithlens.report import figures, quanta_maps

    def draw(out):
        if kind == "map":
            return quanta_maps.draw_map(NODES, MAPS["MathsPurposePerNode"], SPEC.layout, out, "m_", ("png",))
        return quanta_maps.draw_quanta_at(NODES, SPEC, 18, out, "m_", ("png",))

    draws = []
    draw_figure = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda self, renderer: (draws.append(1), draw_figure(self, renderer))[1])
    (fast,) = draw(tmp_path / "fast")
    assert len(draws) == 1
    monkeypatch.setattr(figures, "tight_box", lambda fig, dpi: "tight")  # matplotlib's measuring drawing
    (native,) = draw(tmp_path / "native")
    assert len(draws) == 3
    np.testing.assert_array_equal(imread(fast), imread(native))


def test_a_figure_job_pauses_the_collector_and_collects_its_figure_after():
    import gc
    import weakref

    from arithlens.report.figures import figure_job

    seen = {}

    @figure_job
    def job():
        seen["enabled"] = gc.isenabled()
        fig = new_figure(2, 2)
        fig.subplots().plot([0, 1])
        seen["figure"] = weakref.ref(fig)
        return []

    assert gc.isenabled()
    assert job() == [] and seen["enabled"] is False and gc.isenabled()
    assert seen["figure"]() is None  # its cycles collected when the job ended
    gc.disable()
    try:
        job()
        assert not gc.isenabled()  # a paused collector is left paused
    finally:
        gc.enable()
