"""Overlays: colours from the palette, ignore colour, blending and errors."""
import numpy as np
import pytest

from wsdeploy.data.palette import IGNORE_COLOUR
from wsdeploy.visualize import colorize, default_palette, overlay


def test_colorize_uses_palette_and_ignore_colour():
    pal = default_palette(3)
    out = colorize(np.array([[0, 2, 255]], np.uint8), pal)
    np.testing.assert_array_equal(out[0], [pal[0], pal[2], IGNORE_COLOUR])


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
