"""Tests of the plotting helpers that compute something: tiling images into a grid."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from aigc_helpers import plot


def test_tile_places_each_image_in_reading_order_with_gaps():
    images = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 1, 2, 3)   # image i is all i
    out = plot.tile(images, nrow=3, pad=1, fill=-1.0)
    assert out.shape == (1, 2 * 2 + 1, 3 * 3 + 2)
    for i in range(5):
        r, k = divmod(i, 3)
        assert np.all(out[0, r * 3: r * 3 + 2, k * 4: k * 4 + 3] == i)
    assert np.all(out[0, 2, :] == -1.0)                      # the gap row between the two rows of images
    assert np.all(out[0, 3:, 8:] == -1.0)                    # the empty sixth slot


def test_tile_border_and_bad_shape():
    out = plot.tile(torch.zeros(2, 3, 4, 4), nrow=2, pad=2, fill=1.0, border=True)
    assert out.shape == (3, 4 + 4, 2 * 4 + 2 + 4)
    assert np.all(out[:, :2, :] == 1.0) and np.all(out[:, 2:6, 2:6] == 0.0)
    with pytest.raises(ValueError, match="N, C, h, w"):
        plot.tile(torch.zeros(4, 4), nrow=2)


def test_image_grid_still_draws_the_tiled_grid():
    ax = plot.image_grid(torch.rand(6, 1, 8, 8), nrow=3, title="t")
    shown = ax.get_images()[0].get_array()
    assert shown.shape == (2 * 9 + 1, 3 * 9 + 1)
    matplotlib.pyplot.close("all")


def test_guidance_sweep_places_samples_of_each_class_in_its_column():
    import matplotlib.pyplot as plt
    k, per, h = 3, 4, 5
    images = torch.zeros(k * per, 1, h, h)
    for c in range(k):
        images[c * per:(c + 1) * per] = (c + 1) / 4                      # class c has value (c + 1) / 4
    sweep = {1.0: {"accuracy": 0.2, "fid": 90.0, "images": images}, 3.0: {"accuracy": 0.7, "fid": 60.0, "images": images}}
    fig, axes = plot.guidance_sweep(sweep, ["a", "b", "c"], per_class=per, show_scale=3.0, n_show=2)
    shown = axes[1].images[0].get_array()
    assert shown.shape == (2 * h + 1, k * h + k - 1)                    # 2 rows of samples, 3 columns
    for c in range(k):
        assert np.allclose(shown[:h, c * (h + 1):c * (h + 1) + h], (c + 1) / 4)
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["a", "b", "c"]
    assert list(axes[0].lines[0].get_ydata()) == [0.2, 0.7]
    with pytest.raises(ValueError, match="n_show"):
        plot.guidance_sweep(sweep, ["a", "b", "c"], per_class=per, n_show=5)
    plt.close("all")


def test_shade_pairs_shows_means_and_the_first_pair_of_each_class():
    import matplotlib.pyplot as plt
    k, n, h = 2, 3, 4
    dark, light = torch.full((k * n, 1, h, h), 0.2), torch.full((k * n, 1, h, h), 0.8)
    ds, ls = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.3, 0.3]]), torch.tensor([[0.7, 0.8, 0.9], [0.6, 0.6, 0.6]])
    fig, axes = plot.shade_pairs(dark, light, ds, ls, torch.tensor([0.5, 0.4]), ["x", "y"], pair_title="pairs")
    heights = [p.get_height() for p in axes[0].patches]
    assert np.allclose(heights, [0.2, 0.3, 0.8, 0.6])
    shown = axes[1].images[0].get_array()
    assert shown.shape == (2 * h + 1, k * h + 1) and np.allclose(shown[:h, :h], 0.2) and np.allclose(shown[-h:, :h], 0.8)
    assert axes[1].get_title() == "pairs"
    with pytest.raises(ValueError, match="shades of shape"):
        plot.shade_pairs(dark, light, ds[:, :2], ls, torch.tensor([0.5, 0.4]), ["x", "y"], pair_title="")
    plt.close("all")


def test_loss_curve_plots_evaluations_at_their_steps_with_readable_labels():
    from aigc_helpers.train import History
    h = History(loss=[3.0, 2.5, 2.0, 1.8], eval_steps=[1, 3], evals={"val_loss": [2.6, 1.9]})
    ax = plot.loss_curve(h)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"train loss", "val loss"}
    assert list(lines["val loss"].get_xdata()) == [1, 3] and list(lines["val loss"].get_ydata()) == [2.6, 1.9]
    matplotlib.pyplot.close("all")


def test_loss_curve_tells_the_evaluated_train_loss_from_the_running_one():
    from aigc_helpers.train import History
    h = History(loss=[3.0, 2.5, 2.0, 1.8], eval_steps=[1, 3], evals={"train_loss": [2.7, 2.0], "val_loss": [2.6, 1.9]})
    for smooth, running in ((1, "train loss"), (2, "train loss (mean of 2)")):
        labels = [line.get_label() for line in plot.loss_curve(h, smooth=smooth).get_lines()]
        assert labels[0] == running and "val loss" in labels, labels
        assert len(set(labels)) == 3 and "train loss" not in labels[1:], labels   # two train curves, two names
    matplotlib.pyplot.close("all")


def test_curves_are_drawn_at_the_steps_of_the_training_loss_when_smoothed():
    from aigc_helpers.train import History
    h = History(steps=list(range(10)), loss=list(range(10)))
    ax = plot.loss_curve(h, curves={"same": list(range(10))}, smooth=5)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["same"].get_xdata()) == list(lines["train loss (mean of 5)"].get_xdata()) == [4, 5, 6, 7, 8, 9]
    assert list(lines["same"].get_ydata()) == list(lines["train loss (mean of 5)"].get_ydata())
    matplotlib.pyplot.close("all")


def test_captioned_image_grid_refuses_a_given_axes():
    _, ax = matplotlib.pyplot.subplots()
    with pytest.raises(ValueError, match="figure of their own"):
        plot.image_grid(torch.rand(4, 1, 8, 8), nrow=4, labels=list("abcd"), ax=ax)
    matplotlib.pyplot.close("all")
