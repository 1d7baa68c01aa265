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
