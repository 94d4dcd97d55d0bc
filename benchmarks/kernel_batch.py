"""One lattice for a batch against a Python loop of single-image lattices, in one process.

`BilateralKernel(images)` filters the B images with one lattice (one splat, blur and slice);
before, it built and applied B lattices in a loop, which is what `BilateralKernel(images[b:b+1])`
for each b still does. The batch lattice can be built jointly (`build_lattice` of the stacked
features: hash codes that lead with the image index) or image by image and joined
(`concat_lattices`); all of them give the same numbers bit for bit (tests/wsdeploy/test_crf.py),
so this measures only the cost, which set the kernel's choice on CPU (joint up to 64k pixels,
joined single builds beyond, where they were the faster by 10-23%): CPU seconds (`time.process_time`, so
other jobs on a shared machine move it less than wall time) of the joint build, the B builds
joined, the loop of builds, the kernel's own build, and one application to (B, K, H, W) values,
batch vs loop; the variants interleaved, median of `--repeats` after one warm-up each. Inputs:
smooth random images with blocks of colour, as `loss_speed.py` makes them.

    python benchmarks/kernel_batch.py --threads 1    # B=8, K=10 as the scribble table's losses
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from wsdeploy.atomic import atomic_write_text
from wsdeploy.crf import BilateralKernel
from wsdeploy.crf._lattice import build_lattice, concat_lattices
from wsdeploy.crf.kernel import pixel_features
from wsdeploy.environment import library_versions, machine_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loss_speed import make_inputs  # noqa: E402


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def measure(images: torch.Tensor, values: torch.Tensor, *, sigma_xy: float, sigma_rgb: float, repeats: int) -> dict:
    """Median CPU seconds of build and apply, batch lattice vs loop of single-image lattices."""
    b = images.shape[0]

    def build_batch() -> BilateralKernel:
        return BilateralKernel(images, sigma_xy=sigma_xy, sigma_rgb=sigma_rgb)

    def build_loop() -> list[BilateralKernel]:  # the pre-batch code path: B kernels of one image
        return [BilateralKernel(images[i:i + 1], sigma_xy=sigma_xy, sigma_rgb=sigma_rgb) for i in range(b)]

    pixels = images.permute(0, 2, 3, 1)
    features = torch.stack([pixel_features(pixels[i], images.shape[2], images.shape[3], sigma_xy=sigma_xy,
                                           sigma_rgb=sigma_rgb, device="cpu") for i in range(b)])

    def build_joint() -> None:  # one build_lattice over the B * N pixels
        build_lattice(features)

    def build_joined() -> None:  # B builds joined into the same lattice (the overflow fallback)
        concat_lattices([build_lattice(f) for f in features])

    batch, loop = build_batch(), build_loop()
    if not torch.equal(batch(values), torch.cat([k(values[i:i + 1]) for i, k in enumerate(loop)])):
        raise SystemExit("the batch lattice and the single-image lattices disagree")  # the tests say they cannot
    times: dict[str, list[float]] = {
        k: [] for k in ("build_joint", "build_joined", "build_batch", "build_loop", "apply_batch", "apply_loop")}
    build_joint()
    build_joined()
    for _ in range(repeats):
        times["build_joint"].append(_cpu(build_joint))
        times["build_joined"].append(_cpu(build_joined))
        times["build_batch"].append(_cpu(build_batch))
        times["build_loop"].append(_cpu(build_loop))
        times["apply_batch"].append(_cpu(lambda: batch(values)))
        times["apply_loop"].append(_cpu(lambda: [k(values[i:i + 1]) for i, k in enumerate(loop)]))
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"median_cpu_s": medians, "speedup_build": medians["build_loop"] / medians["build_batch"],
            "speedup_joint_build": medians["build_loop"] / medians["build_joint"],
            "speedup_apply": medians["apply_loop"] / medians["apply_batch"],
            "vertices": batch.lattice.num_vertices, "cpu_s": times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="images per batch (default 8, the table's)")
    parser.add_argument("--channels", type=int, default=10, help="K, channels filtered (default 10)")
    parser.add_argument("--sizes", default="32,64,96,128", help="image sizes in px (default 32,64,96,128; the "
                        "table's losses run at 64, scale 0.5 of its 128-px crops)")
    parser.add_argument("--sigma-xy", type=float, default=25.0, help="spatial sigma at 128 px (scaled with the size)")
    parser.add_argument("--sigma-rgb", type=float, default=30.0, help="colour sigma (default 30, the table's)")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per variant (default 15)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", default="benchmarks/results/kernel_batch.json", help="results file")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.channels < 1 or args.repeats < 1:
        parser.error("--batch, --channels and --repeats must be >= 1")
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 2:
        parser.error(f"--sizes expects a comma list of integers >= 2, got {args.sizes!r}")
    torch.set_num_threads(args.threads)
    results = []
    for size in sizes:
        _, image, _, _ = make_inputs(args.batch, 3, size, torch.device("cpu"))
        values = torch.rand(args.batch, args.channels, size, size, generator=torch.Generator().manual_seed(1))
        sigma_xy = args.sigma_xy * size / 128
        row = measure(image, values, sigma_xy=sigma_xy, sigma_rgb=args.sigma_rgb, repeats=args.repeats)
        results.append({"size": size, "sigma_xy": sigma_xy, **row})
        m = row["median_cpu_s"]
        print(f"{size}px: build {m['build_loop'] * 1e3:.1f} -> {m['build_batch'] * 1e3:.1f} ms "
              f"(joint {m['build_joint'] * 1e3:.1f}, joined singles {m['build_joined'] * 1e3:.1f}), "
              f"apply {m['apply_loop'] * 1e3:.2f} -> {m['apply_batch'] * 1e3:.2f} ms (loop -> batch)", flush=True)
    record = {
        "benchmark": "kernel_batch", "batch": args.batch, "channels": args.channels, "sigma_rgb": args.sigma_rgb,
        "threads": args.threads, "results": results,
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", "benchmarks/kernel_batch.py", *argv]),
        "machine": machine_info(), "versions": library_versions(),
    }
    atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
