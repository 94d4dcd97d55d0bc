"""Image reading: every accepted input kind, every refused one, and the pixel guard."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
import torch

from wsdeploy.data.image_header import image_format_and_size
from wsdeploy.data.image_io import normalize, read_image, read_label_png, write_image, write_label_png


@pytest.fixture()
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)


def _encode(image_rgb: np.ndarray, suffix: str) -> bytes:
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(image_rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def test_array_rgb_is_returned_unchanged(rgb):
    np.testing.assert_array_equal(read_image(rgb), rgb)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff", ".ppm", ".webp"])
def test_lossless_bytes_and_paths_round_trip(rgb, suffix, tmp_path):
    data = _encode(rgb, suffix)
    if suffix == ".webp":
        data = cv2.imencode(".webp", rgb[:, :, ::-1].copy(), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    np.testing.assert_array_equal(read_image(data), rgb)
    path = tmp_path / f"x{suffix}"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_image(path), rgb)
    np.testing.assert_array_equal(read_image(str(path)), rgb)


def test_jpeg_bytes_decode_close(rgb):
    smooth = cv2.GaussianBlur(rgb, (0, 0), 3)
    out = read_image(_encode(smooth, ".jpg"))
    assert out.shape == smooth.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - smooth).mean() < 4


def test_header_sizes_match_decoder(rgb):
    for suffix in (".png", ".jpg", ".bmp", ".tiff", ".ppm", ".webp"):
        fmt, h, w = image_format_and_size(_encode(rgb, suffix))
        assert (h, w) == rgb.shape[:2], fmt


def test_grayscale_and_rgba_are_converted(rgb):
    gray = rgb[:, :, 0]
    out = read_image(gray)
    assert out.shape == (37, 53, 3) and (out == gray[:, :, None]).all()
    np.testing.assert_array_equal(read_image(gray[:, :, None]), out)
    rgba = np.concatenate([rgb, np.full((37, 53, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(read_image(rgba), rgb)
    # grayscale and RGBA files too
    np.testing.assert_array_equal(read_image(_encode(np.repeat(gray[:, :, None], 3, 2), ".png")), out)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(read_image(buf.tobytes()), rgb)


def test_pil_images_of_each_mode(rgb):
    Image = pytest.importorskip("PIL.Image")
    np.testing.assert_array_equal(read_image(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(read_image(Image.fromarray(rgb).convert("RGBA")), rgb)
    gray = Image.fromarray(rgb).convert("L")
    assert (read_image(gray) == np.asarray(gray)[:, :, None]).all()
    pal = Image.fromarray(rgb).convert("P")
    np.testing.assert_array_equal(read_image(pal), np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4, 2), np.uint8), "(H, W, 3)"),
        (np.zeros((2, 4, 4, 3), np.uint8), "(H, W, 3)"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (b"", "empty"),
        (b"this is not an image at all", "not a supported image"),
        (b"%PDF-1.4 not an image", "not a supported image"),
    ],
)
def test_bad_inputs_raise_value_error(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_image(bad)


def test_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="path, bytes"):
        read_image(12345)
    with pytest.raises(TypeError):
        read_image(torch.zeros(3, 4, 4))


def test_missing_and_non_image_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_image(tmp_path / "nope.jpg")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a supported image"):
        read_image(text)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_files_are_refused(rgb, suffix):
    data = _encode(rgb, suffix)
    with pytest.raises(ValueError, match="truncated|decode"):
        read_image(data[: len(data) * 2 // 3])


def test_corrupt_png_body_is_refused(rgb):
    data = bytearray(_encode(rgb, ".png"))
    data[60:200] = b"\x00" * 140  # inside IDAT: zlib stream destroyed, header intact
    with pytest.raises(ValueError):
        read_image(bytes(data))


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG claiming a huge size: a decompression bomb as far as any header reader sees."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (  # noqa: E731
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    )
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _png_header_only(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(ValueError, match="too large"):
        read_image(bomb)
    with pytest.raises(ValueError, match="too large"):
        read_image(_encode(np.zeros((20, 20, 3), np.uint8), ".png"), max_pixels=399)
    with pytest.raises(ValueError, match="too large"):
        read_image(np.zeros((20, 20, 3), np.uint8), max_pixels=399)


def test_label_png_grayscale_and_palette(tmp_path):
    labels = np.array([[0, 1, 2], [255, 1, 0]], np.uint8)
    write_label_png(tmp_path / "m.png", labels)
    np.testing.assert_array_equal(read_label_png(tmp_path / "m.png"), labels)
    Image = pytest.importorskip("PIL.Image")
    img = Image.fromarray(labels, mode="P")
    img.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255, 255, 255] * 253)
    img.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "voc.png"), labels)


def test_label_png_refuses_colour_png(tmp_path, rgb):
    write_image(tmp_path / "c.png", rgb)
    with pytest.raises(ValueError, match="single-channel"):
        read_label_png(tmp_path / "c.png")


def test_write_image_is_atomic_and_round_trips(tmp_path, rgb):
    write_image(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


def test_normalize_shapes_and_values(rgb):
    x = normalize(rgb, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (1, 3, 37, 53) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, 1, 2, 3], torch.tensor(rgb[2, 3, 1] / 255 * 2 - 1, dtype=torch.float32))
    assert normalize(np.stack([rgb, rgb])).shape == (2, 3, 37, 53)
    with pytest.raises(ValueError, match="uint8"):
        normalize(rgb.astype(np.float32))
