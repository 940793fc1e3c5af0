"""Figure writing: atomic, pyplot-free, stable SVG bytes; the training loss curves."""

import numpy as np
from matplotlib.image import imread

from arithlens.report.figures import new_figure, save_figure
from arithlens.report.loss_curves import plot_loss_curves


def test_save_figure_writes_each_format_and_stable_svg(tmp_path):
    def draw():
        fig = new_figure(3, 2)
        fig.add_subplot().plot([0, 1, 2], [2, 0, 1], label="x")
        return fig

    first = save_figure(draw(), tmp_path / "a", "plot", ("png", "svg"), dpi=100)
    second = save_figure(draw(), tmp_path / "b", "plot", ("png", "svg"), dpi=100)
    assert [p.name for p in first] == ["plot.png", "plot.svg"]
    assert first[1].read_bytes() == second[1].read_bytes()  # no date, fixed hash salt
    assert not list((tmp_path / "a").glob("*.tmp*"))  # nothing half-written left behind
    assert imread(first[0]).shape[2] in (3, 4)


def test_loss_curves_show_total_per_qtype_and_per_answer_position(tmp_path):
    steps = 400
    decay = np.exp(-np.arange(steps) / 100.0)
    history = {
        "loss": list(decay),
        "loss_by_qtype": {"add": list(decay * 0.5), "sub": [None] * 10 + list(decay[10:] * 2.0)},
        "loss_by_position": np.outer(decay, np.arange(1, 9)).tolist(),
        "answer_names": [f"A{k}" for k in range(7, -1, -1)],
    }
    paths = plot_loss_curves(history, tmp_path, title="add_d6")
    assert [p.name for p in paths] == ["loss.png", "loss_by_position.png"]
    image = imread(paths[0])
    assert image.shape[:2] == (round(4.5 * 110), 8 * 110)  # fixed size, not cropped
    assert image[..., :3].std() > 0.05  # something is drawn
    history.pop("loss_by_position")
    assert [p.name for p in plot_loss_curves(history, tmp_path / "b")] == ["loss.png"]
