"""The export parity check's and INT8 calibration's default images: real street photos."""
from __future__ import annotations

from wsdeploy.export.images import CHECK_IMAGES, default_check_images


def test_default_check_images_are_the_shipped_street_photos():
    images = default_check_images()
    assert len(images) == 4 and (CHECK_IMAGES.parent / "README.md").is_file()
    for image in images:
        assert image.shape == (360, 480, 3) and image.dtype.name == "uint8"
        assert image.std() > 20  # a photograph, not a flat test pattern
    assert len(default_check_images(count=2)) == 2
