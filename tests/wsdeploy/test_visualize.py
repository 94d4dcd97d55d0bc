"""Overlays: one colouring function, class 0 not black unless it is a background class, the
blend, the legend (issue 16, item 14)."""
import numpy as np
import pytest

from wsdeploy.data.palette import IGNORE_COLOUR, class_palette, colourise, palette
from wsdeploy.visualize import legend_panel, overlay, overlay_with_legend


def test_colourise_uses_the_palette_and_the_ignore_colour():
    pal = palette(3)
    out = colourise(np.array([[0, 2, 255]], np.uint8), pal)
    np.testing.assert_array_equal(out[0], [pal[0], pal[2], IGNORE_COLOUR])
    np.testing.assert_array_equal(colourise(np.array([[1]], np.uint8), 3), palette(3)[[1]][None])
    with pytest.raises(ValueError, match=r"\[0, 3\) or 255, got 7"):
        colourise(np.array([[7]], np.uint8), pal)


def test_class_zero_is_black_only_for_background():
    voc = class_palette(["background", "cat"])
    assert voc[0].tolist() == [0, 0, 0]
    scene = class_palette(["sky", "grass", "sand"])
    assert all(c.any() for c in scene)  # no black class
    assert scene.tolist() == palette(4)[1:].tolist() and len({tuple(c) for c in scene}) == 3


def test_overlay_blends_and_checks_inputs():
    image = np.full((2, 3, 3), 200, np.uint8)
    labels = np.ones((2, 3), np.uint8)
    pal = np.array([[0, 0, 0], [100, 0, 50]], np.uint8)
    out = overlay(image, labels, pal, alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], [150, 100, 125])
    np.testing.assert_array_equal(overlay(image, labels, pal, alpha=0.0), image)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(image, labels[:1], pal)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, labels, pal, alpha=1.5)


def test_legend_lists_the_classes_present_with_their_colours():
    image = np.full((40, 60, 3), 128, np.uint8)
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 40:] = 2  # a third of the pixels; class 1 absent
    classes = ["sky", "grass", "sand"]
    pal = class_palette(classes)
    canvas = overlay_with_legend(image, labels, pal, classes)
    assert canvas.shape[0] >= 40 and canvas.shape[1] > 60
    np.testing.assert_array_equal(canvas[:40, :60], overlay(image, labels, pal))  # pixels line up
    legend = canvas[:, 60:]
    for k in (0, 2):  # a swatch of each present class ...
        assert np.all(legend == pal[k], axis=-1).sum() > 10
    assert not np.all(legend == pal[1], axis=-1).any()  # ... none for the absent one
    tall = legend_panel(classes, pal, np.array([5, 5, 5]), height=10)
    assert tall.shape[0] >= 3 * 12  # grows to fit its rows
