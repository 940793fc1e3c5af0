"""Loss-curve figures from a training history: total, per answer position, per question type."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_loss_curves(history: dict, out_dir: str | Path, title: str = "") -> list[Path]:
    """Write loss.png (total and per qtype) and loss_by_position.png (A7..A0, labelled correctly), atomically."""
    from matplotlib import colormaps

    from arithlens.report.figures import new_figure, save_figure

    loss = np.asarray(history["loss"], dtype=float)
    window = max(1, len(loss) // 200)
    steps = np.arange(1, len(loss) + 1)
    paths = []

    fig = new_figure(8, 4.5, layout="tight")
    ax = fig.add_subplot()
    ax.plot(steps[window - 1:], _smooth(loss, window), color="black", label="all", lw=1.5)
    colours = {"add": "tab:green", "sub": "tab:red", "neg": "tab:blue", "mul": "tab:purple"}
    for name, values in history.get("loss_by_qtype", {}).items():
        arr = np.array([np.nan if v is None else v for v in values], dtype=float)
        ok = ~np.isnan(arr)
        if ok.any():
            ax.plot(steps[ok][window - 1:], _smooth(arr[ok], window), color=colours.get(name), lw=1, label=name.upper())
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean NLL over answer tokens)")
    ax.set_title(f"Training loss {title}".strip())
    ax.legend()
    paths += save_figure(fig, out_dir, "loss", dpi=110, tight=False)

    per_pos = np.asarray(history.get("loss_by_position", []), dtype=float)
    if per_pos.size:
        names = history.get("answer_names") or [f"A{k}" for k in range(per_pos.shape[1] - 1, -1, -1)]
        fig = new_figure(8, 4.5, layout="tight")
        ax = fig.add_subplot()
        cmap = colormaps["viridis"].resampled(per_pos.shape[1])
        for j in range(per_pos.shape[1]):
            ax.plot(steps[window - 1:], _smooth(per_pos[:, j], window), color=cmap(j), lw=1, label=names[j])
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"Loss per answer token {title}".strip())
        ax.legend(ncol=4, fontsize=8)
        paths += save_figure(fig, out_dir, "loss_by_position", dpi=110, tight=False)
    return paths
