"""Every README shell example and every `--help` example runs as written (issue 16).

One scratch folder for the whole README (`scratch_files` says what it holds before the first
block), blocks run in README order with `WSDEPLOY_TINY=1` (toy sizes, `wsdeploy/cli/tiny.py`),
then the `--help` examples of every command in the same folder. One test per block reports
that block's outcome; running any of them runs them all once (a session fixture), since later
blocks use what earlier ones wrote. The convention: tests/readme_blocks.py and the README's
Development section.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.readme_blocks import Block, help_examples, readme_blocks
from tests.readme_runner import Outcome, run_block

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _help_blocks() -> list[Block]:
    from wsdeploy.cli.main import COMMANDS

    return [b for b in (help_examples(c) for c in COMMANDS) if b is not None]


BLOCKS = [b for b in readme_blocks(README) if b.runnable]
HELP_BLOCKS = _help_blocks()


# ---------------------------------------------------------------------------- the scratch folder
def scratch_files(folder: Path) -> None:
    """What the README's examples may assume (listed in the README's Development section)."""
    import cv2

    from wsdeploy.runtime import DEFAULT_MODEL_PATH

    demo = DEFAULT_MODEL_PATH.parent / "demo_data"
    ids = sorted(p.stem for p in (demo / "images").iterdir())[:9]

    def photo(i: int, name: str) -> None:
        image = cv2.imread(str(demo / "images" / f"{ids[i]}.png"))
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name), cv2.resize(image, (96, 80)))

    for i, name in enumerate(["photo.jpg", "cat.jpg", "cat.png", "a.jpg", "b.png", "teddy.jpg",
                              "photos/1.jpg", "photos/2.jpg", "photos/3.jpg"]):
        photo(i, name)
    scribbles = cv2.imread(str(demo / "scribbles" / f"{ids[0]}.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(folder / "scribbles.png"), cv2.resize(scribbles, (96, 80), interpolation=cv2.INTER_NEAREST))
    shutil.copy(DEFAULT_MODEL_PATH, folder / "model.pt")
    # README commands are written for the root of a checkout: wsdeploy/assets/... resolves there
    # (a copy, so a command that writes there cannot touch the package)
    shutil.copytree(DEFAULT_MODEL_PATH.parent, folder / "wsdeploy" / "assets")
    (folder / "run.yaml").write_text(
        "data: data/synthetic\nsupervision: scribbles\nlosses: pce,crf\nmodel: deeplabv3plus_resnet18\n"
        "width: 16\ncrop_size: 64\nsteps: 2\nout_dir: runs/yaml\n"
    )


@pytest.fixture(scope="session")
def readme_outcomes(tmp_path_factory) -> dict[str, Outcome]:
    import torch

    folder = tmp_path_factory.mktemp("readme")
    scratch_files(folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    outcomes: dict[str, Outcome] = {}
    try:
        for block in BLOCKS:
            outcomes[block.id] = run_block(block, folder)
        for block in HELP_BLOCKS:
            outcomes[block.id] = run_block(block, folder, in_help=True)
    finally:
        torch.set_num_threads(threads)
    slow = sorted(outcomes.items(), key=lambda kv: -kv[1].seconds)[:6]
    print(f"README test: {sum(v.seconds for v in outcomes.values()):.0f} s wall, "
          f"{sum(v.cpu_seconds for v in outcomes.values()):.0f} s CPU in this process; slowest blocks (wall / CPU): "
          + ", ".join(f"{k} {v.seconds:.1f}/{v.cpu_seconds:.1f}s" for k, v in slow))
    return outcomes


@pytest.mark.slow  # all blocks run once (~55 s of CPU here, exports and servers included)
@pytest.mark.parametrize("block_id", [b.id for b in BLOCKS + HELP_BLOCKS])
def test_example_runs_as_written(block_id, readme_outcomes):
    outcome = readme_outcomes[block_id]
    if outcome.status == "skipped":
        pytest.skip(outcome.detail)
    assert outcome.status == "passed", f"{block_id}: {outcome.detail}"


def test_python_blocks_are_valid_python():
    import ast

    for block in readme_blocks(README):
        if block.language == "python":
            try:
                ast.parse("\n".join(block.body))
            except SyntaxError as exc:
                pytest.fail(f"{block.id}: {exc}")


def test_markers_and_placeholders_are_detected(tmp_path):
    """The runner itself: a skip needs a reason, placeholders and unknown programs fail."""
    (tmp_path / "R.md").write_text("<!-- readme-test: skip -->\n```bash\nwsdeploy --help\n```\n")
    with pytest.raises(ValueError, match="needs a reason"):
        readme_blocks(tmp_path / "R.md")
    (tmp_path / "R.md").write_text(
        "```bash\nwsdeploy train --data DIR ...\n```\n\n```bash\ndocker run x\n```\n\n"
        "<!-- readme-test: skip needs a GPU -->\n```bash\ndocker run x\n```\n"
        "```bash\nwsdeploy make-dataset ds \\\n  --num-images 3 --size 64   # comment\n```\n"
    )
    blocks = readme_blocks(tmp_path / "R.md")
    assert len(blocks) == 4 and blocks[2].marker == "skip"
    assert run_block(blocks[0], tmp_path).status == "failed"
    assert "not run by the README test" in run_block(blocks[1], tmp_path).detail
    assert run_block(blocks[2], tmp_path).status == "skipped"
    assert blocks[3].commands[0].words == ["wsdeploy", "make-dataset", "ds", "--num-images", "3", "--size", "64"]
    assert run_block(blocks[3], tmp_path).status == "passed"
    assert len(list((tmp_path / "ds" / "images").iterdir())) == 3
