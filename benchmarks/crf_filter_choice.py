"""Which fast algorithm for the bilateral filter? Time and error against the exact kernel.

Candidates, all in plain torch ops on the CRF's 5-D features (x/80, y/80, rgb/13) and its
2-D smoothness features (x/3, y/3), filtering 21 channels:

- permutohedral lattice (wsdeploy.crf._lattice, d + 1 = 6 vertices per pixel), the one shipped;
- sparse bilateral grid: multilinear splat to the 2^d = 32 corners of a hashed grid cell,
  [1, 2, 1] blur per axis, multilinear slice (cell size chosen so the total variance matches);
- for the position-only kernel, a separable 1-D grid per axis (wsdeploy.crf._grid, shipped for
  the CRF's smoothness kernel): nothing to hash, O(H + W) to build;
- exact dense filtering (wsdeploy.crf._reference), for the error and as the O(N²) baseline.

Exact tiled filtering of a downsampled image was not built: each full-resolution pixel still
sums over all N/s² low-resolution points, i.e. 187500 x 11718 x 21 ≈ 46 GFLOP per call at
500x375 with s = 4, seconds on a CPU, and colour edges are lost at the low resolution.

Error: relative L2 error against the exact unnormalised filter after the best single scale
(the approximations are off by a data-dependent scalar), for the row-normalised filter
out / filter(1), and for the symmetric normalisation s * F(s * v), s = F(1)^(-1/2), which is
what the CRF uses (the separable grid only exists in that form). Run:

    python benchmarks/crf_filter_choice.py [--out benchmarks/results/crf_filter_choice.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from wsdeploy.crf._grid import build_separable_gaussian
from wsdeploy.crf._lattice import build_lattice
from wsdeploy.crf._operator import make_operator
from wsdeploy.crf._reference import exact_filter
from wsdeploy.crf.kernel import pixel_features

IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "grabcut13" / "images"  # shared/ beside the checkout


def build_grid(features: torch.Tensor, cell: float):
    """Sparse bilateral grid: multilinear weights to 2^d cell corners, hashed with unique."""
    n, d = features.shape
    g = features / cell
    base = torch.floor(g).to(torch.int64)
    frac = g - base
    bits = torch.tensor([[(c >> i) & 1 for i in range(d)] for c in range(2 ** d)])  # (2^d, d)
    keys = base[:, None, :] + bits[None]  # (N, 2^d, d)
    w = torch.where(bits[None].bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(-1)  # (N, 2^d)
    lo = keys.amin((0, 1)) - 1
    ext = keys.amax((0, 1)) + 2 - lo
    strides = torch.ones(d, dtype=torch.int64)
    for i in range(d - 2, -1, -1):
        strides[i] = strides[i + 1] * ext[i + 1]
    codes = ((keys - lo) * strides).sum(-1).reshape(-1)
    cells, inv = torch.unique(codes, return_inverse=True)
    m = cells.numel()
    nb = []
    for j in range(d):
        for sign in (-1, 1):
            cand = cells + sign * strides[j]
            pos = torch.searchsorted(cells, cand).clamp(max=m - 1)
            nb.append(torch.where(cells[pos] == cand, pos, torch.full_like(pos, m)))
    crow = torch.arange(0, n * 2 ** d + 1, 2 ** d)
    slice_ = torch.sparse_csr_tensor(crow, inv, w.reshape(-1).float(), (n, m + 1))
    order = torch.argsort(inv, stable=True)
    counts = torch.bincount(inv, minlength=m + 1)
    scrow = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
    splat = torch.sparse_csr_tensor(scrow, order // 2 ** d, w.reshape(-1)[order].float(), (m + 1, n))
    return splat, slice_, torch.stack(nb).reshape(d, 2, m)


def grid_filter(grid, values: torch.Tensor) -> torch.Tensor:
    splat, slice_, nb = grid
    g = torch.sparse.mm(splat, values)
    for j in range(nb.shape[0]):
        pad = g.clone()
        pad[-1] = 0
        g = 0.5 * g + 0.25 * (pad[torch.cat([nb[j, 0], nb.new_tensor([nb.shape[2]])])] + pad[torch.cat([nb[j, 1], nb.new_tensor([nb.shape[2]])])])
    return torch.sparse.mm(slice_, g)


def lattice_candidate(features):
    lat = build_lattice(features)
    return make_operator([lat], weights=[1.0], pixel_scales=[None])


# Multilinear splat + slice add 2 * cell²/6 of variance per axis and the [1,2,1]/4 blur
# cell²/2: cell = sqrt(6/5) makes the total 1 (sigma = 1 in feature units).
GRID_CELL = (6.0 / 5.0) ** 0.5


def candidates(kernel: str, size: tuple[int, int]):
    """(name, build(features), apply(operator, values)) for each candidate of a kernel."""
    out = [
        ("lattice", lattice_candidate, lambda op, x: op(x)),
        ("grid", lambda f: build_grid(f, GRID_CELL), grid_filter),
    ]
    if kernel.startswith("gaussian"):
        w, h = size
        sigma = float(kernel.split("_")[1])
        out.append(("separable", lambda f: build_separable_gaussian(h, w, sigma=sigma, weight=1.0, device=f.device),
                    lambda op, x: op(x)))
    return out


def storage_mib(op) -> float:
    """Bytes held by an operator's tensors (sparse: indices and values), in MiB."""
    parts = list(op) if isinstance(op, tuple) else [getattr(op, f) for f in op.__dataclass_fields__]
    total = 0
    for t in parts:
        if isinstance(t, torch.Tensor):
            if t.layout == torch.sparse_csr:
                total += sum(x.numel() * x.element_size() for x in (t.crow_indices(), t.col_indices(), t.values()))
            else:
                total += t.numel() * t.element_size()
    return total / 2**20


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def scaled_error(approx: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    a, e = approx.double(), exact.double()
    scale = float((a * e).sum() / (a * a).sum())
    return float((scale * a - e).norm() / e.norm()), 1.0 / scale


def load(name: str, size: tuple[int, int]) -> torch.Tensor:
    img = cv2.cvtColor(cv2.imread(str(IMAGES / name)), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/crf_filter_choice.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_start = os.getloadavg()
    kernels = {"bilateral_80_13": (80.0, 13.0), "gaussian_3": (3.0, None)}
    rows = []
    # Error against the exact kernel on small photographs (exact is O(N²)).
    for name in ("llama.jpg", "flower.jpg", "sheep.jpg"):
        for size in ((80, 60), (160, 120)):
            img = load(name, size)
            for kname, (sxy, srgb) in kernels.items():
                # Scale sigma_xy with the image so the kernel covers the same fraction of it.
                sxy_s = sxy * size[0] / 500.0 if srgb else sxy
                f = pixel_features(img if srgb else None, size[1], size[0], sigma_xy=sxy_s, sigma_rgb=srgb, device="cpu")
                v = torch.rand(f.shape[0], 21)
                ones = torch.ones(f.shape[0], 1)
                exact = exact_filter(f, v)
                exact_ones = exact_filter(f, ones)
                exact_norm = exact / exact_ones
                s_ex = exact_ones.rsqrt()
                exact_sym = s_ex * exact_filter(f, s_ex * v)
                for cand, build, apply in candidates(kname, size):
                    op = build(f)
                    row = dict(kind="error", image=name, size=list(size), kernel=kname,
                               sigma_xy=sxy_s, candidate=cand)
                    if cand == "separable":  # already symmetric-normalised
                        sym = apply(op, v)
                    else:
                        out = apply(op, v)
                        err, scale = scaled_error(out, exact)
                        norm = out / apply(op, ones)
                        row.update(rel_error_after_scale=err, scale=scale,
                                   rel_error_normalised=float((norm.double() - exact_norm).norm() / exact_norm.norm()))
                        s_ap = apply(op, ones).rsqrt()
                        sym = s_ap * apply(op, s_ap * v)
                    row["rel_error_symmetric"] = float((sym.double() - exact_sym).norm() / exact_sym.norm())
                    rows.append(row)
                    print("error", {k: (round(x, 4) if isinstance(x, float) else x) for k, x in row.items() if k != "kind"}, flush=True)
    # Time and memory (splat/blur/slice storage) at full sizes.
    for size in ((250, 250), (500, 375), (1024, 768)):
        img = load("llama.jpg", size)
        for kname, (sxy, srgb) in kernels.items():
            f = pixel_features(img if srgb else None, size[1], size[0], sigma_xy=sxy, sigma_rgb=srgb, device="cpu")
            v = torch.rand(f.shape[0], 21)
            for cand, build, apply in candidates(kname, size):
                reps = 1 if size[0] > 600 else args.repeats
                t_build = median_time(lambda: build(f), reps)
                op = build(f)
                t_apply = median_time(lambda: apply(op, v), reps)
                rows.append(dict(kind="time", size=list(size), kernel=kname, candidate=cand,
                                 build_s=t_build, filter_21ch_s=t_apply, storage_mib=storage_mib(op)))
                print(f"time {size} {kname:16s} {cand:9s} build {t_build:.4f}s filter(21ch) {t_apply:.4f}s", flush=True)
    # How the shipped lattice grows with classes and sigmas (500x375, bilateral kernel).
    img = load("llama.jpg", (500, 375))
    for sxy, srgb in ((80.0, 13.0), (20.0, 13.0), (160.0, 13.0), (80.0, 5.0), (80.0, 30.0)):
        f = pixel_features(img, 375, 500, sigma_xy=sxy, sigma_rgb=srgb, device="cpu")
        t_build = median_time(lambda: build_lattice(f), args.repeats)
        lat = build_lattice(f)
        op = make_operator([lat], weights=[1.0], pixel_scales=[None])
        for channels in (2, 21, 64):
            v = torch.rand(f.shape[0], channels)
            t_apply = median_time(lambda: op(v), args.repeats)
            rows.append(dict(kind="scaling", size=[500, 375], sigma_xy=sxy, sigma_rgb=srgb,
                             channels=channels, vertices=lat.num_vertices, build_s=t_build,
                             filter_s=t_apply, storage_mib=storage_mib(op)))
            print(f"scaling sxy={sxy} srgb={srgb} C={channels} M={lat.num_vertices} build {t_build:.3f}s "
                  f"filter {t_apply:.4f}s", flush=True)
    result = dict(
        command=" ".join([Path(sys.executable).name] + sys.argv),
        machine=dict(platform=platform.platform(), processor=platform.processor(),
                     cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                     loadavg_start=load_start, loadavg_end=os.getloadavg()),
        versions=dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__),
        rows=rows,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
