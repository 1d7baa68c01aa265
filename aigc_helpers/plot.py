"""Figures every chapter uses: image grids, loss curves, heat maps, 2-D data, text-to-image checks.

Each function draws on a given ``ax`` (or makes a new figure), always sets a
title and axis labels, and returns the ``Axes`` so a notebook can add to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _ax(ax, figsize=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


def tile(images, nrow: int, *, pad: int = 1, fill: float = 1.0, border: bool = False) -> np.ndarray:
    """Tile images ``(N, C, h, w)`` into one array ``(C, H, W)``, ``nrow`` images per row.

    ``pad`` pixels of value ``fill`` separate the images (and surround them with ``border``).
    """
    x = _np(images)
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, h, w), got {x.shape}")
    n, c, h, w = x.shape
    rows = int(np.ceil(n / nrow))
    edge = pad if border else 0
    out = np.full((c, rows * (h + pad) - pad + 2 * edge, nrow * (w + pad) - pad + 2 * edge), fill, dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = edge + r * (h + pad), edge + k * (w + pad)
        out[:, top: top + h, left: left + w] = x[i]
    return out


def image_grid(images, nrow: int = 8, *, title: str = "", labels: Sequence[str] | None = None,
               ax=None, cmap: str = "gray", scale: float = 1.0):
    """Show ``images`` ``(N, C, H, W)`` with values in [0, 1] as a grid, optionally captioned.

    Returns the ``Axes``; with ``labels`` each image gets its own axes in a new figure, and
    the array of them is returned (so ``ax`` cannot be given).
    """
    x = _np(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {x.shape}")
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = int(np.ceil(n / ncol))
    if labels is not None:
        if ax is not None:
            raise ValueError("captioned images need a figure of their own: leave ax=None with labels")
        if len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for {n} images")
        fig, axes = plt.subplots(nrows, ncol, figsize=(scale * 1.1 * ncol, scale * 1.3 * nrows), squeeze=False,
                                 layout="constrained")
        for i, a in enumerate(axes.flat):
            a.axis("off")
            if i < n:
                img = x[i, 0] if c == 1 else x[i].transpose(1, 2, 0)
                a.imshow(np.clip(img, 0, 1), cmap=cmap, vmin=0, vmax=1)
                a.set_title(str(labels[i]), fontsize=8)
        if title:
            fig.suptitle(title)
        return axes
    grid = tile(x, ncol, pad=1, fill=1.0, border=True)          # (C, H', W')
    ax = _ax(ax, figsize=(scale * 0.6 * ncol + 1, scale * 0.6 * nrows + 0.6))
    img = grid[0] if c == 1 else grid.transpose(1, 2, 0)
    ax.imshow(np.clip(img, 0, 1), cmap=cmap, vmin=0, vmax=1)
    ax.set_title(title or f"{n} images")
    ax.axis("off")
    return ax


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    return np.convolve(y, kernel, mode="valid")


def loss_curve(history=None, *, curves: dict[str, Sequence[float]] | None = None,
               title: str = "Training loss", ylabel: str = "loss", xlabel: str = "step",
               smooth: int = 1, logy: bool = False, ax=None):
    """Plot a :class:`~aigc_helpers.train.History` (training loss and evaluations)
    and/or ``curves`` (name -> values, one per step)."""
    ax = _ax(ax)
    if history is not None:
        y = _smooth(np.asarray(history.loss, dtype=float), smooth)
        ax.plot(np.arange(len(y)) + (smooth - 1 if smooth > 1 and len(history.loss) >= smooth else 0),
                y, label="train loss" + (f" (mean of {smooth})" if smooth > 1 else ""), alpha=0.9)
        for name, values in history.evals.items():
            label = name.replace("_", " ")                                   # "val_loss" -> "val loss"
            if label == "train loss":                                        # not the running mean above
                label += " (on fixed eval batches)"
            ax.plot(history.eval_steps, values, "o-", label=label)
    for name, values in (curves or {}).items():
        ys = _smooth(np.asarray(values, dtype=float), smooth)
        ax.plot(np.arange(len(ys)) + (len(values) - len(ys)), ys, label=name)   # at its window's last step
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def heatmap(matrix, *, xlabels: Sequence[str] | None = None, ylabels: Sequence[str] | None = None,
            title: str = "", xlabel: str = "", ylabel: str = "", cmap: str = "viridis",
            annotate: bool = False, fmt: str = ".2f", ax=None, colorbar: bool = True):
    """A labelled heat map (attention weights, confusion matrices, counts)."""
    m = _np(matrix)
    if m.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D matrix, got shape {m.shape}")
    ax = _ax(ax, figsize=(max(4, 0.45 * m.shape[1] + 2), max(3, 0.4 * m.shape[0] + 1.5)))
    im = ax.imshow(m, cmap=cmap, aspect="auto")
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), labels=list(xlabels), rotation=90 if max(map(len, map(str, xlabels)), default=0) > 2 else 0)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), labels=list(ylabels))
    if annotate:
        for (i, j), v in np.ndenumerate(m):
            r, g, b, _ = im.cmap(im.norm(v))               # dark cell -> white text, light cell -> black
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                    color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def scatter_2d(x, labels=None, *, title: str = "", ax=None, s: float = 6, alpha: float = 0.6,
               xlabel: str = "$x_1$", ylabel: str = "$x_2$", label: str | None = None, **kw):
    """Scatter 2-D points, coloured by ``labels`` when given."""
    p = _np(x)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"expected points of shape (N, 2), got {p.shape}")
    ax = _ax(ax, figsize=(4.5, 4.5))
    if labels is not None:   # fixed colours per class: 0 blue, 1 orange, 2 green, ...
        kw = {"c": _np(labels), "cmap": "tab10", "vmin": 0, "vmax": 9, **kw}
    ax.scatter(p[:, 0], p[:, 1], s=s, alpha=alpha, label=label, **kw)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_aspect("equal", adjustable="datalim")
    return ax


def decision_boundary(predict: Callable[[torch.Tensor], torch.Tensor], x, labels, *,
                      title: str = "", ax=None, resolution: int = 200, margin: float = 0.5):
    """Shade where ``predict`` (points ``(N, 2)`` -> P(class 1) ``(N,)``) says class 1, and overlay the data."""
    p = _np(x)
    lo, hi = p.min(0) - margin, p.max(0) + margin
    half = (hi - lo).max() / 2                     # a square window, so equal axes are shaded to the edges
    lo, hi = (lo + hi) / 2 - half, (lo + hi) / 2 + half
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    with torch.no_grad():
        z = _np(predict(grid)).reshape(gx.shape)
    ax = _ax(ax, figsize=(4.5, 4.5))
    cs = ax.contourf(gx, gy, z, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35)
    ax.contour(gx, gy, z, levels=[0.5], colors="k", linewidths=1.2)
    ax.figure.colorbar(cs, ax=ax, fraction=0.046, pad=0.04, label="P(class 1)")
    scatter_2d(p, labels, ax=ax, title=title, s=8, alpha=0.8)
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    ax.set_aspect("equal", adjustable="box")
    return ax


def guidance_sweep(sweep: dict, class_names: Sequence[str], *, per_class: int, show_scale: float = 3.0,
                   n_show: int = 8, chance: float | None = None):
    """The guidance-scale figure of the text-to-image chapters; returns ``(fig, axes)``.

    ``sweep`` maps each guidance scale to ``{"accuracy", "fid", "images"}``, where ``images``
    ``(n_classes * per_class, 1, h, w)`` hold ``per_class`` samples of each class in turn. Left:
    the judge's accuracy and the classifier-FID against the scale; right: ``n_show`` samples per
    class (one column per class) at ``show_scale``.
    """
    k = len(class_names)
    images = _np(sweep[show_scale]["images"])
    if images.ndim != 4 or len(images) != k * per_class or n_show > per_class:
        raise ValueError(f"expected {k} x {per_class} images (N, C, h, w) and n_show <= per_class, "
                         f"got {images.shape} and n_show={n_show}")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), width_ratios=[1, 1.6])
    scales = list(sweep)
    axes[0].plot(scales, [sweep[s]["accuracy"] for s in scales], "o-", label="judge's accuracy")
    axes[0].axhline(1 / k if chance is None else chance, color="gray", ls=":", label="chance")
    axes[0].set(xlabel="guidance scale s", ylabel="accuracy", ylim=(0, 1), title="Does the garment match the prompt?")
    twin = axes[0].twinx()
    twin.plot(scales, [sweep[s]["fid"] for s in scales], "s--", color="C3", label="classifier-FID")
    twin.set_ylabel("classifier-FID (lower is better)", color="C3")
    axes[0].legend(loc="center right")
    axes[0].grid(alpha=0.3)
    _, c, h, w = images.shape
    grid = images.reshape(k, per_class, c, h, w)[:, :n_show].transpose(1, 0, 2, 3, 4).reshape(-1, c, h, w)
    axes[1].imshow(tile(grid, k)[0], cmap="gray", vmin=0, vmax=1)
    axes[1].set_xticks(np.arange(k) * (w + 1) + w // 2, class_names, rotation=30, fontsize=8)
    axes[1].set_yticks([])
    axes[1].set_title(f"guidance scale {show_scale:g}: {n_show} samples per prompt (columns)")
    fig.tight_layout()
    return fig, axes


def shade_pairs(dark, light, dark_shades, light_shades, medians, class_names: Sequence[str], *, pair_title: str):
    """The shade-word figure of the text-to-image chapters; returns ``(fig, axes)``.

    ``dark`` and ``light`` are images ``(n_classes * n, 1, h, w)`` drawn for "a dark ..." and
    "a light ..." of each class in turn, and ``dark_shades``, ``light_shades`` their shades
    ``(n_classes, n)``; ``medians`` the classes' median shades. Left: the mean shade per class
    against the median; right: the first dark and light image of each class.
    """
    k = len(class_names)
    dark, light = torch.as_tensor(dark), torch.as_tensor(light)
    if dark.shape != light.shape or dark.dim() != 4 or len(dark) % k:
        raise ValueError(f"expected two equal image batches (k * n, C, h, w) for k = {k} classes, "
                         f"got {tuple(dark.shape)} and {tuple(light.shape)}")
    n = len(dark) // k
    if tuple(dark_shades.shape) != (k, n) or tuple(light_shades.shape) != (k, n):
        raise ValueError(f"expected shades of shape ({k}, {n})")
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), width_ratios=[1, 1.5])
    x = np.arange(k)
    axes[0].bar(x - 0.2, _np(dark_shades).mean(1), 0.4, label='"a dark ..."', color="0.3")
    axes[0].bar(x + 0.2, _np(light_shades).mean(1), 0.4, label='"a light ..."', color="0.75", edgecolor="0.3")
    axes[0].plot(x, _np(medians), "r_", ms=18, mew=2, label="class median (training data)")
    axes[0].set_xticks(x, class_names, rotation=40, fontsize=8)
    axes[0].set(ylabel=f"mean shade of {n} samples", title="The shade word, measured", ylim=(0, 1.05))
    axes[0].legend(fontsize=8, ncol=3, loc="upper left")
    h = dark.shape[-2]
    firsts = torch.cat([dark.view(k, n, *dark.shape[1:])[:, 0], light.view(k, n, *light.shape[1:])[:, 0]])
    axes[1].imshow(tile(firsts, k)[0], cmap="gray", vmin=0, vmax=1)
    axes[1].set_yticks([h // 2, h + 1 + h // 2], ['"dark"', '"light"'])
    axes[1].set_xticks([])
    axes[1].set_title(pair_title)
    fig.tight_layout()
    return fig, axes
