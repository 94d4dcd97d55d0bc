"""One test per failure the fuzzers found (benchmarks/fuzz.py FIXED lists them), fixed at its source."""
from __future__ import annotations

import io
import struct
import zipfile

import cv2
import numpy as np
import pytest
import torch

from wsdeploy.checkpoint import ModelCard, load_checkpoint, load_untrusted
from wsdeploy.data.image_header import image_format_and_size
from wsdeploy.data.image_io import read_image, read_label_png
from wsdeploy.serving.formats import decode_label_png, decode_npz, encode_label_png, encode_npz

from tests.fuzz.harness import current_rss_mb, peak_rss_mb, reset_peak_rss


def _png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def _chunk_bomb(data: bytes) -> bytes:
    """The fuzzer's find: the first IDAT chunk's length set to ~4 GB in a 100-byte PNG."""
    at = 8 + 25  # signature, IHDR chunk (4 length + 4 type + 13 data + 4 crc)
    assert data[at + 4 : at + 8] == b"IDAT"
    return data[:at] + b"\xee" + data[at + 1 :]


def test_png_chunk_longer_than_the_file_is_refused_before_decoding():
    bomb = _chunk_bomb(_png(np.zeros((6, 9), np.uint8)))
    reset_peak_rss()
    before = current_rss_mb()
    for read in (lambda: read_image(bomb), lambda: image_format_and_size(bomb)):
        with pytest.raises(ValueError, match="chunk b'IDAT' at byte 33 declares"):
            read()
    assert peak_rss_mb() - before < 100  # OpenCV's libpng took 3.8 GB for it


def test_label_png_bombs_and_truncation_are_value_errors(tmp_path):
    path = tmp_path / "m.png"
    good = _png(np.zeros((6, 9), np.uint8))
    cases = [
        ("chunk b'IDAT'", _chunk_bomb(good)),
        ("truncated", good[:25]),  # was IndexError (data[25])
        ("truncated", good[:-20]),
        ("image too large", good[:16] + struct.pack(">II", 100_000, 100_000) + good[24:]),
    ]
    for match, data in cases:
        path.write_bytes(data)
        with pytest.raises(ValueError, match=match):
            read_label_png(path)
    path.write_bytes(good)
    assert read_label_png(path).shape == (6, 9)
    with pytest.raises(ValueError, match="image too large"):
        read_label_png(path, max_pixels=10)


def test_corrupt_palette_png_is_a_value_error(tmp_path):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4), mode="P").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    plte = data.index(b"PLTE")
    data[plte - 1] ^= 0x40  # PLTE length off: Pillow raised OSError / SyntaxError here
    path = tmp_path / "p.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as info:
        read_label_png(path)
    assert "\n" not in str(info.value)


def test_load_untrusted_survives_an_empty_error_message(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    with zipfile.ZipFile(path, "w") as archive:  # a complete zip, so torch.load itself is reached
        archive.writestr("x/data.pkl", b"")

    def raise_empty(*args, **kwargs):
        raise KeyError()  # torch's zip reader did this; str() is '' and splitlines()[0] failed

    monkeypatch.setattr(torch, "load", raise_empty)
    with pytest.raises(ValueError, match="not a readable checkpoint.*KeyError"):
        load_untrusted(path)


def test_client_decoders_raise_value_errors_only():
    labels = np.arange(30, dtype=np.uint8).reshape(5, 6) % 3
    npz = encode_npz(labels, ["a", "b", "c"], None)
    bad_npz = [b"", b"PK\x03\x04garbage", npz[:40], npz[:-30], npz.replace(b"labels.npy", b"lxbels.npy")]
    for data in bad_npz:
        with pytest.raises(ValueError):
            decode_npz(data)
    # an array header declaring 2**40 elements is refused before numpy allocates it
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }".ljust(117) + "\n"
        z.writestr("probs.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    with pytest.raises(ValueError, match="declare"):
        decode_npz(buf.getvalue())
    labels_back, classes, probs = decode_npz(npz)
    assert classes == ["a", "b", "c"] and probs is None and (labels_back == labels).all()

    png = encode_label_png(labels)
    for data in (b"", png[:30], png[:16] + struct.pack(">II", 60_000, 60_000) + png[24:]):
        with pytest.raises(ValueError):
            decode_label_png(data, 3)  # b"" was cv2.error; the huge one decoded for seconds
    assert (decode_label_png(png, 3) == labels).all()


def _card(**changes):
    base = ModelCard(arch="lraspp_resnet18", classes=["a", "b"]).to_dict()
    base.update(changes)
    return base


def test_card_errors_are_short():
    huge = "x" * 200_000
    for card in (_card(std=[huge]), _card(arch=[huge]), {**_card(), huge: 1}, _card(format_version=huge)):
        with pytest.raises(ValueError) as info:
            ModelCard.from_dict(card)
        assert len(str(info.value)) <= 1000 and "\n" not in str(info.value)


@pytest.mark.parametrize("field, value", [
    ("classes", "ab"), ("losses", 2), ("losses", None), ("losses", {"pce": "1"}), ("created", ["x"]),
    ("evaluation", [1]), ("training", None), ("arch_kwargs", {1: 2}), ("palette", [[1, 2, 3], [1, 2, 300]]),
    ("palette", [[1, 2, 3], "abc"]), ("input_size", [0, 4]), ("input_size", "ab"), ("mean", [float("nan"), 0, 0]),
    ("std", ["a", "b", "c"]), ("supervision", ["full"]), ("format_version", True), ("evaluation", {"x": object()}),
])
def test_card_field_types_are_checked(field, value):
    with pytest.raises(ValueError, match=field if field != "evaluation" or value == [1] else "JSON"):
        ModelCard.from_dict(_card(**{field: value}))


def test_a_card_asking_for_a_huge_model_is_refused_without_allocating(tmp_path):
    path = tmp_path / "m.pt"
    card = _card(arch_kwargs={"width": 1_000_000})
    torch.save({"format": "wsdeploy-checkpoint", "card": card, "state_dict": {"w": torch.zeros(2)}}, path)
    reset_peak_rss()
    before = current_rss_mb()
    with pytest.raises(ValueError, match="do not match the model card"):
        load_checkpoint(path)
    assert peak_rss_mb() - before < 200  # building it for real wants terabytes


def test_unreadable_paths_are_value_errors(tmp_path):
    for src in ("x" * 5000, tmp_path):  # name too long (OSError), a folder
        with pytest.raises(ValueError):
            read_image(src)
        with pytest.raises(ValueError):
            read_label_png(src)


def test_a_zip_claiming_to_span_disks_is_a_value_error(tmp_path):
    """zipfile.is_zipfile raises BadZipFile (it does not return False) for a multi-disk end record."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    data = bytearray(buf.getvalue())
    locator = data.rindex(b"PK\x06\x07")  # torch writes zip64: its end locator counts the disks
    data[locator + 16 : locator + 20] = b"\x02\x00\x00\x00"  # "2 disks"
    path = tmp_path / "m.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt zip archive|not a readable checkpoint"):
        load_untrusted(path)


def test_upload_errors_quote_headers_briefly():
    from wsdeploy.serving.api import RequestError
    from wsdeploy.serving.body import check_upload_headers

    class Request:
        def __init__(self, headers):
            self.headers = headers

    for headers in ({"content-type": "multipart/x" + "\x16" * 5000}, {"content-type": "image/png", "content-length": "9" * 5000 + "x"}):
        with pytest.raises(RequestError) as info:
            check_upload_headers(Request(headers), 1000, ("application/octet-stream",))
        assert len(info.value.message) < 300 and info.value.status in (400, 415)
