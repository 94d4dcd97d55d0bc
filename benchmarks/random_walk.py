"""Time of the random-walk propagation of CAMs (wsdeploy.training.tags.random_walk).

One case = `propagate_cams` on a batch: T CAMs of an S x S image pooled to the affinity grid
(stride s), the sparse transition matrix built from random affinities (radius r, beta), t
walk steps, bilinear upsampling back to S x S. Also timed: the affinity head's forward
(`AffinityNet` on a randomly initialised classifier, the image-level table's classifier_resnet18
at width 16, output stride 8), so "walk" and "walk + head" are both on record. Medians over
`--repeats` after one warm-up; threads pinned (`--threads`, default 1).

    python benchmarks/random_walk.py                                  # CPU, 128 px, 1 thread
    python benchmarks/random_walk.py --device cuda --size 512 --batch 8 \
        --out benchmarks/results/random_walk_cuda.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from wsdeploy.atomic import atomic_write_text
from wsdeploy.environment import library_versions, machine_info
from wsdeploy.models import build_model
from wsdeploy.training.tags.affinity import AffinityNet
from wsdeploy.training.tags.random_walk import neighbour_offsets, propagate_cams, transition_matrix


def _time(fn, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of this process of fn() over `repeats` runs
    after one warm-up. On a shared, oversubscribed CPU the wall time includes waiting for a core;
    at 1 thread the CPU time is what the walk costs on a core of its own."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=128, help="image side S (pixels)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tags", type=int, default=5, help="CAM channels T (the synthetic set has 1-7 tags)")
    parser.add_argument("--strides", default="4,8", help="affinity grid strides to time")
    parser.add_argument("--radius", type=int, default=5)
    parser.add_argument("--beta", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/random_walk_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    d = len(neighbour_offsets(args.radius))
    cams = torch.rand(args.batch, args.tags, args.size, args.size, generator=g).to(device)
    torch.manual_seed(0)
    classifier = build_model("classifier_resnet18", 9, width=16, output_stride=8)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    rows = []
    for stride in [int(s) for s in args.strides.split(",")]:
        grid = args.size // stride
        affinity = torch.rand(args.batch, d, grid, grid, generator=g).to(device)

        def walk() -> None:
            propagate_cams(cams, affinity, radius=args.radius, beta=args.beta, steps=args.steps)

        net = AffinityNet(classifier, radius=args.radius, stride=stride, dim=32).to(device).eval()

        def head() -> None:
            with torch.no_grad():
                net(x)

        t_walk, c_walk = _time(walk, args.repeats, device)
        t_head, c_head = _time(head, args.repeats, device)
        row = {"stride": stride, "grid": [grid, grid], "nodes_per_image": grid * grid,
               "walk_ms": 1e3 * t_walk, "head_ms": 1e3 * t_head,
               "walk_cpu_ms": 1e3 * c_walk, "head_cpu_ms": 1e3 * c_head,
               "walk_ms_per_image": 1e3 * t_walk / args.batch,
               "images_per_s_walk": args.batch / t_walk}
        row["nonzeros_per_image"] = int(transition_matrix(affinity[:1], radius=args.radius, beta=args.beta)._nnz())
        rows.append(row)
        print(f"stride {stride}: grid {grid}x{grid}, walk {row['walk_ms']:.1f} ms wall / {row['walk_cpu_ms']:.1f} ms CPU, "
              f"head {row['head_ms']:.1f} / {row['head_cpu_ms']:.1f} ms (batch {args.batch})", flush=True)
    result = {
        "machine": machine_info(), "versions": library_versions(),
        "command": " ".join([sys.executable, *sys.argv]), "threads": torch.get_num_threads(),
        "device": str(device), "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "case": {"size": args.size, "batch": args.batch, "tags": args.tags, "radius": args.radius,
                 "pair_offsets": d, "beta": args.beta, "steps": args.steps, "repeats": args.repeats},
        "target": "random walk for one 128-px image <= 50 ms on the 2-core CPU",
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
