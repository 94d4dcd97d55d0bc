"""Time wsdeploy.crf.dense_crf against pydensecrf, side by side, on the same inputs.

For 250x250, 500x375 and 1024x768 crops of a GrabCut photograph with 21-class network-like
probabilities (ground truth -> noisy, blurred logits -> softmax), 5 and 10 mean-field
iterations, DeepLab/densecrf kernels (CRFParams defaults): median wall time of several runs
after a warm-up (lattice construction included: both methods start from image + probs),
peak resident memory above the baseline (VmHWM, reset per method), label agreement with
pydensecrf, and the speed ratio. torch runs with 1 thread and with its default thread count
(pydensecrf is single-threaded); on CUDA machines the GPU is timed too. Then all 13 GrabCut
photographs at their own size (284-640 px), 21 classes, 10 iterations, one timed run each
with one torch thread: label agreement per image and the total time of both. Writes JSON with the machine,
versions, load average and command.

    python benchmarks/crf.py [--out benchmarks/results/crf.json] [--repeats 5]
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
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

from wsdeploy.crf import CRFParams, dense_crf

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "grabcut13"  # shared/ beside the checkout
SIZES = ((250, 250), (500, 375), (1024, 768))  # (W, H)
NUM_CLASSES = 21
FOREGROUND_CLASS = 15


def network_like_probs(mask: np.ndarray, *, seed: int) -> np.ndarray:
    """(H, W) mask (0 bg, 1 fg, 255 unknown) -> (21, H, W) float32 softmax probabilities."""
    rng = np.random.default_rng(seed)
    h, w = mask.shape
    target = np.zeros((NUM_CLASSES, h, w), np.float32)
    target[0] = mask == 0
    target[FOREGROUND_CLASS] = mask == 1
    target[[0, FOREGROUND_CLASS]] += 0.5 * (mask == 255)
    logits = 4.0 * target + rng.normal(0.0, 1.5, target.shape).astype(np.float32)
    logits = np.stack([cv2.GaussianBlur(c, (0, 0), max(h, w) / 60.0) for c in logits])
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def pydensecrf_run(image: np.ndarray, probs: np.ndarray, params: CRFParams) -> np.ndarray:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    k, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=params.gaussian_sigma_xy, compat=params.gaussian_weight)
    crf.addPairwiseBilateral(sxy=params.bilateral_sigma_xy, srgb=params.bilateral_sigma_rgb,
                             rgbim=image, compat=params.bilateral_weight)
    return np.asarray(crf.inference(params.iterations)).reshape(k, h, w)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def measure(fn, repeats: int) -> tuple[float, list[float], float, object]:
    """Warm up once, then `repeats` timed runs: (median s, all times, peak MiB, result).

    Peak memory: the process's resident high-water mark (VmHWM, reset first) above the
    resident size before the warm-up (after malloc_trim, so cached free memory does not hide
    new allocations): what one call needs at most, inputs excluded. Linux only.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand cached free memory back to the OS
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    base = _rss_kib("VmRSS")
    result = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    peak = (_rss_kib("VmHWM") - base) / 1024.0
    return statistics.median(times), times, peak, result


def load_inputs(name: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.cvtColor(cv2.imread(str(DATA / "images" / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
    mask = cv2.imread(str(DATA / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    image = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    return image, network_like_probs(mask, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/crf.json")
    parser.add_argument("--image", default="llama", help="GrabCut-13 image name")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (1024x768: max(2, repeats // 2))")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    load_start = os.getloadavg()
    rows = []
    for size in SIZES:
        image, probs = load_inputs(args.image, size)
        repeats = max(2, args.repeats // 2) if size[0] > 600 else args.repeats
        for iterations in (5, 10):
            params = CRFParams(iterations=iterations)
            t_ref, all_ref, mem_ref, ref = measure(lambda: pydensecrf_run(image, probs, params), repeats)
            ref_labels = ref.argmax(0)
            row = dict(size=list(size), classes=NUM_CLASSES, iterations=iterations, repeats=repeats,
                       pydensecrf=dict(median_s=t_ref, times_s=all_ref, peak_mib=mem_ref),
                       crf_changed_labels=float((ref_labels != probs.argmax(0)).mean()))
            configs = [("cpu", 1), ("cpu", default_threads)] if default_threads > 1 else [("cpu", 1)]
            if torch.cuda.is_available():
                configs.append(("cuda", default_threads))
            for device, threads in configs:
                torch.set_num_threads(threads)
                p = torch.from_numpy(probs).to(device)

                def run() -> torch.Tensor:
                    out = dense_crf(image, p, **params.as_dict())
                    if device == "cuda":
                        torch.cuda.synchronize()
                    return out

                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                t, all_t, mem, out = measure(run, repeats)
                if device == "cuda":
                    mem = torch.cuda.max_memory_allocated() / 2**20
                agree = float((out.cpu().numpy().argmax(0) == ref_labels).mean())
                key = f"wsdeploy_{device}_{threads}t"
                row[key] = dict(median_s=t, times_s=all_t, peak_mib=mem, label_agreement=agree,
                                speedup_vs_pydensecrf=t_ref / t)
                print(f"{size[0]}x{size[1]} it={iterations:2d} pydensecrf {t_ref:.3f}s | {key} {t:.3f}s "
                      f"x{t_ref / t:.2f} agree {agree:.4f} | peak MiB {mem_ref:.0f} / {mem:.0f}", flush=True)
            torch.set_num_threads(default_threads)
            rows.append(row)
    grabcut = []
    params = CRFParams()
    torch.set_num_threads(1)  # like pydensecrf; robust when the machine is shared
    for i, name in enumerate(sorted(p.stem for p in (DATA / "images").glob("*.jpg"))):
        image = np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(DATA / "images" / f"{name}.jpg")), cv2.COLOR_BGR2RGB))
        probs = network_like_probs(cv2.imread(str(DATA / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE), seed=i)
        t = time.perf_counter()
        ref = pydensecrf_run(image, probs, params).argmax(0)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        ours = dense_crf(image, probs, **params.as_dict()).argmax(0)
        t_ours = time.perf_counter() - t
        grabcut.append(dict(image=name, size=[image.shape[1], image.shape[0]], pydensecrf_s=t_ref,
                            wsdeploy_cpu_s=t_ours, label_agreement=float((ours == ref).mean()),
                            crf_changed_labels=float((ref != probs.argmax(0)).mean())))
        print(f"grabcut {name:9s} {image.shape[1]}x{image.shape[0]} pydensecrf {t_ref:.3f}s wsdeploy {t_ours:.3f}s "
              f"agree {grabcut[-1]['label_agreement']:.4f}", flush=True)
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    result = dict(
        command=" ".join(["python"] + sys.argv),
        machine=dict(platform=platform.platform(), cpu=cpu_model, cpu_count=os.cpu_count(),
                     torch_default_threads=default_threads,
                     cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                     loadavg_start=load_start, loadavg_end=os.getloadavg()),
        versions=dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__,
                      opencv=cv2.__version__, pydensecrf2=importlib.metadata.version("pydensecrf2")),
        params=CRFParams().as_dict() | {"iterations": [5, 10]},
        image=args.image,
        rows=rows,
        grabcut13_10_iterations=dict(
            torch_threads=1,
            per_image=grabcut,
            min_label_agreement=min(g["label_agreement"] for g in grabcut),
            mean_label_agreement=float(np.mean([g["label_agreement"] for g in grabcut])),
            total_pydensecrf_s=sum(g["pydensecrf_s"] for g in grabcut),
            total_wsdeploy_cpu_s=sum(g["wsdeploy_cpu_s"] for g in grabcut),
        ),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
