"""Make data/camvid: the shared CamVid folder plus a tuning split carved from train.

    python scripts/prepare_camvid.py [--source ../shared/data/camvid] [--out data/camvid]

The images, masks and scribbles are linked (symlinks), never copied or changed; `splits/` holds
the source's train.txt and val.txt unchanged, plus

- `tune.txt`: the 0016E5 train frames numbered after the val block (> 08159) and the last 30
  0006R0 train frames, 46 frames held out for choices (the dense-CRF post-processing settings);
- `tune_train.txt`: the other train frames (321), the training set of the tuning runs.

Val is never used for a choice. `dataset.json` records the source, the license note and a
content hash (sha256 over every image, mask and scribble file, in name order), so a results
JSON can name exactly the data it was measured on.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from wsdeploy.atomic import atomic_write_text

LICENSE = (
    "CamVid (Brostow, Fauqueur & Cipolla, Pattern Recognition Letters 2009; Brostow, Shotton, "
    "Fauqueur & Cipolla, ECCV 2008), SegNet's 11-class 480x360 version: personal and research use "
    "only (Creative Commons, non-commercial)"
)


def content_hash(root: Path) -> str:
    """sha256 over the names and bytes of images/, masks/ and scribbles/, in name order."""
    h = hashlib.sha256()
    for sub in ("images", "masks", "scribbles"):
        for path in sorted((root / sub).iterdir()):
            h.update(f"{sub}/{path.name}\n".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def tuning_split(train: list[str]) -> tuple[list[str], list[str]]:
    """(tune_train, tune): see the module docstring."""
    after_val = [n for n in train if n.startswith("0016E5_") and int(n.split("_")[1]) > 8159]
    r0 = sorted(n for n in train if n.startswith("0006R0_"))[-30:]
    tune = set(after_val) | set(r0)
    return [n for n in train if n not in tune], [n for n in train if n in tune]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="../shared/data/camvid", help="the shared CamVid folder")
    parser.add_argument("--out", default="data/camvid", help="folder to make (links + splits)")
    args = parser.parse_args()
    src, out = Path(args.source).resolve(), Path(args.out)
    if not (src / "images").is_dir():
        print(f"error: no CamVid folder at {args.source!r} (expected images/, masks/, scribbles/)", file=sys.stderr)
        return 2
    (out / "splits").mkdir(parents=True, exist_ok=True)
    for name in ("images", "masks", "scribbles", "classes.txt", "tags.txt", "README.md"):
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(src / name, link)
    train = (src / "splits" / "train.txt").read_text().split()
    val = (src / "splits" / "val.txt").read_text().split()
    tune_train, tune = tuning_split(train)
    for name, ids in (("train", train), ("val", val), ("tune_train", tune_train), ("tune", tune)):
        atomic_write_text(out / "splits" / f"{name}.txt", "\n".join(ids) + "\n")
    manifest = {
        "name": "camvid",
        "source": str(src),
        "license": LICENSE,
        "content_sha256": content_hash(src),
        "splits": {"train": len(train), "val": len(val), "tune_train": len(tune_train), "tune": len(tune)},
        "size": [360, 480],
    }
    atomic_write_text(out / "dataset.json", json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out} (train {len(train)}, val {len(val)}, tune_train {len(tune_train)}, tune {len(tune)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
