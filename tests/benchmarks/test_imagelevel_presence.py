"""benchmarks/imagelevel_presence.py: dropping the classes a segmenter gives too little area,
on hand-made logit maps (nothing trained here)."""
from __future__ import annotations

import pytest
import torch

from tests.benchmarks.test_records import _load


@pytest.fixture(scope="module")
def presence():
    return _load("imagelevel_presence")


def _logits(labels: torch.Tensor, runner_up: torch.Tensor, k: int) -> torch.Tensor:
    """(K, H, W) logits whose argmax is `labels` and second choice `runner_up`."""
    out = torch.zeros(k, *labels.shape)
    out.scatter_(0, runner_up[None], 1.0)
    out.scatter_(0, labels[None], 2.0)
    return out


def test_a_small_class_goes_to_each_pixel_runner_up(presence):
    labels = torch.zeros(10, 10, dtype=torch.long)
    labels[:, 6:] = 1  # class 1 covers 40%
    labels[0, 0] = 2  # class 2: one pixel, 1%
    runner_up = torch.full((10, 10), 1)
    runner_up[:, 6:] = 0
    logits = _logits(labels, runner_up, 3)
    expected = labels.clone()
    expected[0, 0] = 1  # its second choice
    assert torch.equal(presence.drop_small_classes(logits, 0.02), expected)
    assert torch.equal(presence.drop_small_classes(logits, 0.0), labels)  # 0 drops nothing
    assert torch.equal(presence.drop_small_classes(logits, 0.005), labels)  # 1% >= 0.5%


def test_every_small_class_goes_at_once_but_the_largest_and_the_background_stay(presence):
    labels = torch.zeros(10, 10, dtype=torch.long)
    labels[0, :3] = 1  # class 1: 3%
    labels[1, :2] = 2  # class 2: 2%
    runner_up = torch.zeros(10, 10, dtype=torch.long)
    runner_up[1, :2] = 1
    runner_up[0, :3] = 2
    logits = _logits(labels, runner_up, 3)
    # 4%: both go (class 2's pixels do not rescue class 1), their pixels to class 0 at last
    assert bool((presence.drop_small_classes(logits, 0.04) == 0).all())
    # 2.5%: only class 2 goes; its pixels go to their second choice, class 1
    out = presence.drop_small_classes(logits, 0.025)
    assert int((out == 1).sum()) == 5 and not bool((out == 2).any())
    # the background is never dropped, however small: class 1's pixels go to it
    out = presence.drop_small_classes(logits, 0.04, keep=2)
    assert int((out == 2).sum()) == 5 and not bool((out == 1).any())
    # the largest class is never dropped, even below the fraction
    assert bool((presence.drop_small_classes(logits, 0.99) == 0).all())


def test_bad_inputs_are_clear_errors(presence):
    with pytest.raises(ValueError, match="min_area"):
        presence.drop_small_classes(torch.zeros(3, 4, 4), 1.0)
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        presence.drop_small_classes(torch.zeros(4, 4), 0.1)


def test_absent_class_statistics_count_what_the_tags_do_not_contain(presence):
    labels = torch.zeros(10, 10, dtype=torch.long)
    labels[:, :2] = 1  # 20%, tagged
    labels[0, 5:] = 2  # 5%, not tagged
    logits = _logits(labels, torch.zeros(10, 10, dtype=torch.long), 3)
    stats = presence.absent_class_statistics([logits, logits], [[0, 1], [0, 1, 2]], 3, None)
    assert stats["absent_pixel_fraction"] == pytest.approx(5 / 200)  # only the first image lacks tag 2
    assert stats["absent_class_predictions"] == 1 and stats["absent_class_area_median"] == pytest.approx(0.05)
    assert stats["absent_class_area_share_of_pixels_in_regions_over_5pct"] == pytest.approx(1.0)
    with_bg = presence.absent_class_statistics([logits], [[0]], 3, 2)  # the background is never absent
    assert with_bg["absent_class_predictions"] == 1 and with_bg["absent_pixel_fraction"] == pytest.approx(0.2)


@pytest.mark.parametrize("argv, message", [
    (["--segmenters", "{missing}"], "no such segmenter"),
    (["--segmenters", "{junk}"], "not a PyTorch checkpoint"),
    (["--segmenters", "{junk}", "--min-areas", "0,1.5"], "fractions in"),
    (["--segmenters", "{junk}", "--min-areas", "a"], "comma list of numbers"),
])
def test_bad_inputs_are_one_line_errors_before_anything_is_written(presence, tmp_path, monkeypatch, capsys, argv,
                                                                   message):
    junk = tmp_path / "junk.pt"
    junk.write_text("junk")
    argv = [a.format(missing=tmp_path / "none.pt", junk=junk) for a in argv]
    out = tmp_path / "out.json"
    monkeypatch.setattr("sys.argv", ["imagelevel_presence.py", "--data", str(tmp_path), "--json", str(out), *argv])
    with pytest.raises(SystemExit):
        presence.main()
    assert message in capsys.readouterr().err and not out.exists()
