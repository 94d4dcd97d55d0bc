"""The measurements of `gpu_suite.py`, one function per section: `section(plan, ctx) -> dict`.

Every timing goes through `wsdeploy.bench.time_calls` (CUDA events on a CUDA device, after
`plan.warmup` untimed calls; the reported figure is the median, `p50_ms`), except annotate,
which is a whole pipeline with CPU steps and is timed by the synchronised wall clock. Inputs are
real images: `wsdeploy.export.images.default_check_images` (the package's default parity /
calibration images), resized to each section's size; annotate uses the demo photographs and
their scribbles shipped in the package.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from wsdeploy.bench import time_calls

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and repeats of every section: `FULL` (one H100/H200) or `DRY` (tiny, CPU)."""

    device: str
    warmup: int
    repeats: int
    crf_size: tuple[int, int]  # (W, H)
    crf_classes: int
    crf_iterations: int
    cpu_threads: tuple[int, ...]  # CPU engine timed at these torch thread counts
    loss_arch: str
    loss_kwargs: dict[str, Any]
    loss_crop: int
    loss_batch: int
    loss_classes: int
    loss_scales: tuple[float, ...]
    cam_arch: str
    cam_kwargs: dict[str, Any]
    cam_size: int
    cam_batch: int
    cam_classes: int
    walk: dict[str, int | float]  # size, stride, tags, radius, beta, steps
    infer_size: int
    infer_batches: tuple[int, ...]
    infer_arch: tuple[str, dict[str, Any]] | None  # None: the bundled model; else a random one (dry run: fast to trace)
    compile_backend: str  # "inductor" on the GPU; "eager" in the dry run (no C++ compile)
    compile_mode: str | None
    aoti: bool  # AOTInductor .pt2 (a C++ compile); the dry run times the exported program instead
    annotate_photos: int
    annotate_configs: dict[str, dict[str, Any]]  # name -> AnnotateConfig settings; "default" = the package's


FULL = Plan(
    device="cuda", warmup=3, repeats=20, crf_size=(500, 375), crf_classes=21, crf_iterations=10,
    cpu_threads=(1, os.cpu_count() or 1),
    loss_arch="deeplabv3plus_resnet101", loss_kwargs={}, loss_crop=513, loss_batch=8, loss_classes=21,
    loss_scales=(0.5, 1.0), cam_arch="classifier_resnet50", cam_kwargs={}, cam_size=512, cam_batch=8, cam_classes=20,
    walk={"size": 512, "stride": 8, "tags": 5, "radius": 5, "beta": 8.0, "steps": 256}, infer_size=512,
    infer_batches=(1, 16), infer_arch=None, compile_backend="inductor", compile_mode="reduce-overhead", aoti=True,
    annotate_photos=8, annotate_configs={"default": {}, "network": {"method": "network"}},
)
DRY = Plan(
    device="cpu", warmup=1, repeats=2, crf_size=(64, 48), crf_classes=4, crf_iterations=2, cpu_threads=(1,),
    loss_arch="deeplabv3plus_resnet18", loss_kwargs={"width": 8}, loss_crop=33, loss_batch=1, loss_classes=3,
    loss_scales=(0.5, 1.0), cam_arch="classifier_resnet18", cam_kwargs={"width": 8}, cam_size=64, cam_batch=2,
    cam_classes=4, walk={"size": 64, "stride": 8, "tags": 3, "radius": 2, "beta": 8.0, "steps": 4}, infer_size=64,
    infer_batches=(1,), infer_arch=("lraspp_resnet18", {"width": 8}), compile_backend="eager", compile_mode=None, aoti=False, annotate_photos=1,
    annotate_configs={"default": {}, "network": {"method": "network", "size": 32, "steps": 2, "width": 8, "depth": 2}},
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def real_images(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """`count` of the package's default check images (repeated if there are fewer), resized to
    (W, H) with area interpolation: (H, W, 3) uint8 RGB."""
    from wsdeploy.export.images import default_check_images

    base = default_check_images()
    return [np.ascontiguousarray(cv2.resize(base[i % len(base)], size, interpolation=cv2.INTER_AREA))
            for i in range(count)]


def smooth_probs(k: int, h: int, w: int, *, seed: int) -> np.ndarray:
    """(K, H, W) float32 network-like softmax probabilities (blurred noisy logits)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, (k, h, w)).astype(np.float32)
    logits = 4.0 * np.stack([cv2.GaussianBlur(c, (0, 0), max(h, w) / 30.0) for c in logits])
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def _ms(timing: Any) -> dict[str, float]:
    return {"median_ms": round(timing.p50_ms, 3), "p90_ms": round(timing.p90_ms, 3), "repeats": timing.repeats}


def crf(plan: Plan, dev: torch.device) -> dict[str, Any]:
    """Dense CRF (K classes, W x H, iterations) on the device, the CPU engine, and pydensecrf."""
    from wsdeploy.crf import CRFParams, dense_crf

    w, h = plan.crf_size
    image = real_images(1, (w, h))[0]
    probs = smooth_probs(plan.crf_classes, h, w, seed=0)
    it = plan.crf_iterations
    out: dict[str, Any] = {"size_wh": [w, h], "classes": plan.crf_classes, "iterations": it}
    img_t, probs_t = torch.from_numpy(image).to(dev), torch.from_numpy(probs).to(dev)
    result = dense_crf(img_t, probs_t, iterations=it)
    labels = result.argmax(0).cpu().numpy()
    out[f"{dev.type}_fp32"] = _ms(time_calls(lambda: dense_crf(img_t, probs_t, iterations=it), batch=1,
                                             warmup=plan.warmup, repeats=plan.repeats, device=dev))
    if dev.type == "cuda":
        half = probs_t.half()
        out["cuda_fp16"] = _ms(time_calls(lambda: dense_crf(img_t, half, iterations=it), batch=1,
                                          warmup=plan.warmup, repeats=plan.repeats, device=dev))
    threads = torch.get_num_threads()
    cpu_labels = None
    for n in plan.cpu_threads:
        torch.set_num_threads(n)
        try:
            timing = time_calls(lambda: dense_crf(image, probs, iterations=it), batch=1, warmup=1,
                                repeats=max(2, plan.repeats // 5))
        finally:
            torch.set_num_threads(threads)
        out[f"cpu_engine_{n}_threads"] = _ms(timing)
    cpu_labels = dense_crf(image, probs, iterations=it).argmax(0)
    out["labels_agree_device_vs_cpu"] = float((labels == cpu_labels).mean())
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        out["pydensecrf"] = {"skipped": "pydensecrf is not importable here (pip install pydensecrf2)"}
    else:
        params = CRFParams(iterations=it)
        out["pydensecrf"] = _ms(time_calls(lambda: _pydensecrf(image, probs, params), batch=1, warmup=1,
                                           repeats=max(2, plan.repeats // 5)))
        out["labels_agree_device_vs_pydensecrf"] = float((labels == _pydensecrf(image, probs, params).argmax(0)).mean())
    gpu = out[f"{dev.type}_fp32"]["median_ms"]
    out["speedup_vs_cpu_engine_1_thread"] = round(out["cpu_engine_1_threads"]["median_ms"] / gpu, 2)
    if "median_ms" in out["pydensecrf"]:
        out["speedup_vs_pydensecrf"] = round(out["pydensecrf"]["median_ms"] / gpu, 2)
    return out


def _pydensecrf(image: np.ndarray, probs: np.ndarray, params: Any) -> np.ndarray:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    k, h, w = probs.shape
    model = dcrf.DenseCRF2D(w, h, k)
    model.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    model.addPairwiseGaussian(sxy=params.gaussian_sigma_xy, compat=params.gaussian_weight)
    model.addPairwiseBilateral(sxy=params.bilateral_sigma_xy, srgb=params.bilateral_sigma_rgb, rgbim=image,
                               compat=params.bilateral_weight)
    return np.asarray(model.inference(params.iterations)).reshape(k, h, w)


def crf_loss(plan: Plan, dev: torch.device) -> dict[str, Any]:
    """One training step (bf16 autocast forward, pCE on scribble-like targets, backward, SGD) with
    and without the dense-CRF loss at each scale; overhead = step time / plain step time - 1."""
    from wsdeploy.models import build_model
    from wsdeploy.training.losses import DenseCRFLoss, partial_cross_entropy

    torch.manual_seed(0)
    model = build_model(plan.loss_arch, plan.loss_classes, **plan.loss_kwargs).to(dev).train()
    m = int(model.input_multiple)
    crop, b = plan.loss_crop, plan.loss_batch
    side = -(-crop // m) * m  # the crop padded to the model's input multiple, padding excluded from the losses
    images = np.stack(real_images(b, (crop, crop)))  # (B, S, S, 3)
    image = torch.zeros(b, 3, side, side)
    image[:, :, :crop, :crop] = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    mean, std = torch.tensor([0.485, 0.456, 0.406]) * 255, torch.tensor([0.229, 0.224, 0.225]) * 255
    x = ((image - mean[:, None, None]) / std[:, None, None]).to(dev)
    image = image.to(dev)
    valid = torch.zeros(b, side, side, dtype=torch.bool)
    valid[:, :crop, :crop] = True
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, plan.loss_classes, (b, side, side), generator=g)
    target = torch.where(torch.rand(b, side, side, generator=g) < 0.03, target, 255)
    target[~valid] = 254
    target, valid = target.to(dev), valid.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    autocast_dtype = torch.bfloat16

    def step(extra: Any) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=autocast_dtype):
            out = model(x)  # (B, K, S/stride, S/stride)
        logits = F.interpolate(out.float(), size=(side, side), mode="bilinear", align_corners=False)  # as the trainer
        loss = partial_cross_entropy(logits, target)
        if extra is not None:
            loss = loss + extra(logits.softmax(1), image, valid)
        loss.backward()
        opt.step()

    out: dict[str, Any] = {
        "arch": plan.loss_arch, "crop": crop, "padded_to": side, "batch": b, "classes": plan.loss_classes,
        "autocast": "bf16", "optimizer": "SGD momentum 0.9",
    }
    repeats = max(2, plan.repeats // 2)
    base = time_calls(lambda: step(None), batch=b, warmup=plan.warmup, repeats=repeats, device=dev)
    out["pce_only"] = _ms(base)
    for scale in plan.loss_scales:
        loss = DenseCRFLoss(1.0, scale_factor=scale)
        timing = time_calls(lambda: step(loss), batch=b, warmup=plan.warmup, repeats=repeats, device=dev)
        out[f"pce_plus_crf_scale_{scale}"] = {**_ms(timing), "overhead": round(timing.p50_ms / base.p50_ms - 1.0, 4)}
    return out


def cam(plan: Plan, dev: torch.device) -> dict[str, Any]:
    """Multi-scale (0.5, 1, 1.5, 2) + flip CAMs of a classifier at S px, fp32 and bf16 autocast;
    the random-walk propagation too when `wsdeploy.training.tags.random_walk` exists."""
    from wsdeploy.models import build_model
    from wsdeploy.training.tags.cam import multiscale_cam

    torch.manual_seed(0)
    model = build_model(plan.cam_arch, plan.cam_classes, **plan.cam_kwargs).to(dev).eval()
    s, b = plan.cam_size, plan.cam_batch
    batch = torch.from_numpy(np.stack(real_images(b, (s, s)))).permute(0, 3, 1, 2).float() / 255.0
    x = ((batch - 0.45) / 0.225).to(dev)
    out: dict[str, Any] = {"arch": plan.cam_arch, "size": s, "batch": b, "scales": [0.5, 1.0, 1.5, 2.0], "flip": True}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        def run(dtype: Any = dtype) -> Any:
            if dtype is None:
                return multiscale_cam(model, x)
            with torch.autocast(dev.type, dtype=dtype):
                return multiscale_cam(model, x)

        timing = time_calls(run, batch=b, warmup=plan.warmup, repeats=max(3, plan.repeats // 2), device=dev)
        out[name] = {**_ms(timing), "images_per_s": round(timing.throughput_ips, 2)}
    try:
        from wsdeploy.training.tags.random_walk import neighbour_offsets, propagate_cams
    except ImportError:
        out["random_walk"] = {"skipped": "wsdeploy.training.tags.random_walk is not in this version"}
        return out
    w = plan.walk
    g = torch.Generator().manual_seed(0)
    grid = int(w["size"]) // int(w["stride"])
    cams = torch.rand(b, int(w["tags"]), int(w["size"]), int(w["size"]), generator=g).to(dev)
    affinity = torch.rand(b, len(neighbour_offsets(int(w["radius"]))), grid, grid, generator=g).to(dev)
    timing = time_calls(
        lambda: propagate_cams(cams, affinity, radius=int(w["radius"]), beta=float(w["beta"]), steps=int(w["steps"])),
        batch=b, warmup=plan.warmup, repeats=max(3, plan.repeats // 2), device=dev,
    )
    out["random_walk"] = {**w, "batch": b, **_ms(timing), "images_per_s": round(timing.throughput_ips, 2)}
    return out


class _Compiled:
    """A `torch.compile`d bf16 + channels_last forward behind the backend interface."""

    def __init__(self, model: torch.nn.Module, dev: torch.device, plan: Plan) -> None:
        self.device, self.input_multiple, self.logit_stride = dev, int(model.input_multiple), int(model.logit_stride)
        net = copy.deepcopy(model).eval().to(dev).to(memory_format=torch.channels_last)
        options = {"mode": plan.compile_mode} if plan.compile_backend == "inductor" and plan.compile_mode else {}
        self._forward = torch.compile(net, backend=plan.compile_backend, dynamic=False, **options)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        torch.compiler.cudagraph_mark_step_begin()  # "reduce-overhead": a new step may reuse the graph's buffers
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16):
            return self._forward(x).float().clone()  # the output must outlive the next replay


def inference(plan: Plan, dev: torch.device, *, compiled: bool) -> dict[str, Any]:
    """Model-only throughput of the bundled default model at S x S, per batch size, and each
    variant's label agreement with eager fp32 on the real images (the runtime's post-processing).

    compiled=False: eager fp32, bf16 + channels_last, onnxruntime's CUDA provider when present.
    compiled=True: torch.compile (bf16 + channels_last), the AOTInductor .pt2 (fp32).
    """
    from wsdeploy.backends import OnnxRuntimeBackend, Pt2Backend, TorchBackend
    from wsdeploy.checkpoint import load_checkpoint
    from wsdeploy.export.parity import compare_backends
    from wsdeploy.runtime import DEFAULT_MODEL_PATH, preprocess

    tmp = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    checkpoint = DEFAULT_MODEL_PATH if plan.infer_arch is None else _random_checkpoint(plan.infer_arch, tmp / "m.pt")
    model, card = load_checkpoint(checkpoint)
    s = plan.infer_size
    images = real_images(max(plan.infer_batches), (s, s))
    reference = TorchBackend(copy.deepcopy(model), device=dev)
    variants: dict[str, Any] = {}
    build_s: dict[str, float] = {}
    if not compiled:
        variants["eager_fp32"] = reference
        variants["bf16_channels_last"] = TorchBackend(copy.deepcopy(model), device=dev, precision="bf16",
                                                      channels_last=True)
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers() and dev.type == "cuda":
            from wsdeploy.export import to_onnx

            t0 = time.perf_counter()
            onnx_path = to_onnx(checkpoint, tmp / "model.onnx", check=False).path
            variants["onnxruntime_cuda"] = OnnxRuntimeBackend(onnx_path, device=str(dev))
            build_s["onnxruntime_cuda"] = time.perf_counter() - t0
        else:
            variants["onnxruntime_cuda"] = "skipped: this onnxruntime has no CUDA provider (onnxruntime-gpu not installed)"
    else:
        variants["torch_compile_bf16_channels_last"] = _Compiled(model, dev, plan)
        from wsdeploy.export import to_pt2

        t0 = time.perf_counter()
        pt2 = to_pt2(checkpoint, tmp / "model.pt2", aoti=plan.aoti, device=str(dev), check=False).path
        build_s["aoti_pt2" if plan.aoti else "pt2_exported_program"] = time.perf_counter() - t0
        variants["aoti_pt2" if plan.aoti else "pt2_exported_program"] = Pt2Backend(pt2, device=str(dev))
    out: dict[str, Any] = {"model": card.arch, "model_file": checkpoint.name, "size": s,
                           "agreement_images": len(images), "variants": {}}
    for name, backend in variants.items():
        if isinstance(backend, str):
            out["variants"][name] = {"skipped": backend.split(": ", 1)[1]}
            continue
        row: dict[str, Any] = {}
        if name in build_s:
            row["build_s"] = round(build_s[name], 1)
        for b in plan.infer_batches:
            x = preprocess(np.stack(images[:b]), mean=card.mean, std=card.std, multiple=backend.input_multiple).to(dev)
            t0 = time.perf_counter()
            backend(x)
            sync(dev)
            first = time.perf_counter() - t0  # includes compiling for this shape where there is one
            timing = time_calls(lambda: backend(x), batch=b, warmup=plan.warmup, repeats=plan.repeats, device=dev)
            row[f"batch_{b}"] = {**_ms(timing), "images_per_s": round(timing.throughput_ips, 2),
                                 "first_call_s": round(first, 2)}
        with torch.no_grad():
            report = compare_backends(reference, backend, images, card=card)
        row["label_agreement_vs_eager_fp32"] = round(report.label_agreement, 6)
        row["max_abs_logit_error"] = float(f"{report.max_abs_error:.3g}")
        out["variants"][name] = row
    return out


def _random_checkpoint(arch: tuple[str, dict[str, Any]], path: Path) -> Path:
    """A randomly initialised checkpoint of `arch` with the bundled model's classes."""
    from wsdeploy.checkpoint import ModelCard, read_checkpoint, save_checkpoint
    from wsdeploy.models import build_model
    from wsdeploy.runtime import DEFAULT_MODEL_PATH

    classes = read_checkpoint(DEFAULT_MODEL_PATH)[0].classes
    torch.manual_seed(0)
    card = ModelCard(arch=arch[0], arch_kwargs=dict(arch[1]), classes=list(classes), supervision="scribbles")
    save_checkpoint(path, build_model(arch[0], len(classes), **arch[1]), card)
    return path


def annotate(plan: Plan, dev: torch.device) -> dict[str, Any]:
    """`wsdeploy.training.annotate` on the demo photographs with their scribbles, once per entry of
    `plan.annotate_configs` (the package's default method, and the per-image network, the part
    that runs on the GPU): seconds per photo (synchronised wall clock, after one untimed warm-up
    photo) and pixel accuracy against the demo masks. A method that fails (e.g. PyMaxflow missing
    for the graph cut) is recorded with its error; the others still run."""
    from wsdeploy.data.image_io import read_image
    from wsdeploy.training import AnnotateConfig

    demo = ROOT / "wsdeploy" / "assets" / "demo_data"
    names = sorted(p.name for p in (demo / "scribbles").glob("*.png"))[: plan.annotate_photos]
    if not names:
        raise ValueError(f"no scribbles in {demo / 'scribbles'}")
    k = len((demo / "classes.txt").read_text().split())
    photos = [(read_image(demo / "images" / n), cv2.imread(str(demo / "scribbles" / n), cv2.IMREAD_GRAYSCALE),
               cv2.imread(str(demo / "masks" / n), cv2.IMREAD_GRAYSCALE)) for n in names]
    out: dict[str, Any] = {"photos": len(names), "photo_size_hw": list(photos[0][0].shape[:2]), "methods": {}}
    for label, settings in plan.annotate_configs.items():
        try:
            out["methods"][label] = _annotate_photos(photos, AnnotateConfig(**settings), k, dev)
        except Exception as exc:  # noqa: BLE001 -- record it; the other method still runs
            out["methods"][label] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def _annotate_photos(photos: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], config: Any, k: int,
                     dev: torch.device) -> dict[str, Any]:
    from wsdeploy.training import annotate as run_annotate

    run_annotate(photos[0][0], photos[0][1], num_classes=k, config=config, device=dev)  # warm-up
    seconds, accuracy = [], []
    for image, scribbles, mask in photos:
        sync(dev)
        t0 = time.perf_counter()
        result = run_annotate(image, scribbles, num_classes=k, config=config, device=dev)
        sync(dev)
        seconds.append(time.perf_counter() - t0)
        if mask is not None:
            keep = mask != 255
            accuracy.append(float((result.labels[keep] == mask[keep]).mean()))
    return {
        "config": dataclasses.asdict(config), "median_s_per_photo": round(statistics.median(seconds), 3),
        "s_per_photo": [round(t, 3) for t in seconds],
        "mean_pixel_accuracy": round(float(np.mean(accuracy)), 4) if accuracy else None,
    }
