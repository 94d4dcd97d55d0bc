"""What a rerun needs to reproduce a result: code commit, packages, data bytes, CPU and math kernels.

`wsdeploy.environment` says *where* a result was produced (machine, a few versions); this module
records what can change the numbers of a CPU training run:

- `git_state`: the commit the code was at and whether the tree had uncommitted changes.
- `installed_packages`: every distribution in the environment (albumentations included), by
  `importlib.metadata`, not a hand-picked list.
- `dataset_hash`: a content hash of a dataset folder, per split (see its docstring for the rule).
- `cpu_features`: vendor, model, family/model/stepping and the ISA flags from `/proc/cpuinfo`
  (AVX2, AVX-512, VNNI, BF16, AMX ...) that decide which kernels oneDNN, MKL, ATen and numpy run.
- `math_libraries`: torch's CPU capability (ATen's kernel dispatch), its oneDNN / MKL / OpenMP
  build lines (`torch.__config__`), thread counts, numpy's and OpenCV's SIMD dispatch, and the
  environment variables that override any of these.

`provenance()` bundles them for the head of a results JSON. Everything here is read-only and
cheap (a dataset of 800 small PNGs hashes in well under a second); nothing is imported at module
level beyond the standard library, so `import wsdeploy.provenance` stays light.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = [
    "KERNEL_ENV",
    "cpu_features",
    "dataset_hash",
    "file_digests",
    "git_state",
    "installed_packages",
    "math_libraries",
    "provenance",
]

# /proc/cpuinfo flags that select math kernels (SIMD width, dot-product and low-precision units).
_ISA_FLAG = re.compile(r"^(sse\d.*|ssse3|avx.*|fma.?|f16c|amx.*|.*vnni.*|.*bf16.*|.*fp16.*)$")

# Environment variables that change which kernels run or how many threads run them.
KERNEL_ENV = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE",
    "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES", "OPENCV_CPU_DISABLE",
)


def git_state(path: str | Path = ".") -> dict[str, object]:
    """The git commit of the checkout holding `path` and whether its tracked files differ from it.

    Returns:
        `{"commit": 40-hex str, "dirty": bool, "changed": [up to 50 paths with uncommitted
        changes to tracked files], "diff_sha256": SHA-256 of `git diff HEAD` (None when clean)}`;
        `{"commit": None, ...}` outside a git checkout or without git. Untracked files are not
        counted (runs/, data/ and caches would always make it dirty).
    """
    cwd = Path(path)
    cwd = cwd if cwd.is_dir() else cwd.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=30).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, check=True, timeout=60).stdout
        diff = subprocess.run(["git", "diff", "HEAD"], cwd=cwd, capture_output=True, check=True,
                              timeout=60).stdout if status.strip() else b""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "changed": [], "diff_sha256": None}
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:50],
            "diff_sha256": hashlib.sha256(diff).hexdigest() if changed else None}


def installed_packages() -> dict[str, str]:
    """`{distribution name (lower case): version}` for every package importlib.metadata finds."""
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages.setdefault(name.lower(), dist.version)
    return dict(sorted(packages.items()))


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, object]:
    """The first processor's identity and its kernel-relevant ISA flags.

    Returns:
        `{"vendor", "model_name", "family", "model", "stepping", "microcode", "isa_flags": sorted
        list (e.g. ["avx", "avx2", "avx512_bf16", ...]), "flags_sha256": hash of the full flag
        list}`; empty values where the file is missing (not Linux).
    """
    fields: dict[str, str] = {}
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.split("\n\n", 1)[0].splitlines():  # the first processor block
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    flags = fields.get("flags", "").split()
    return {
        "vendor": fields.get("vendor_id"),
        "model_name": fields.get("model name"),
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "stepping": fields.get("stepping"),
        "microcode": fields.get("microcode"),
        "isa_flags": sorted(f for f in flags if _ISA_FLAG.match(f)),
        "flags_sha256": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest() if flags else None,
    }


def math_libraries() -> dict[str, object]:
    """Which CPU kernels torch, numpy and OpenCV dispatch to here, and with how many threads.

    Returns:
        `{"torch_cpu_capability": "AVX2" | "AVX512" | ..., "torch_build": [torch.__config__.show()
        lines naming MKL, oneDNN (MKL-DNN), OpenMP, the CPU capability and BLAS],
        "torch_threads", "torch_interop_threads", "mkldnn_available", "numpy_simd": {found/
        not_found}, "opencv_cpu_features": str or None, "env": {the kernel and thread variables
        that are set}}`.
    """
    import torch  # local: keep the module import light

    build = [line.strip(" -") for line in torch.__config__.show().splitlines()
             if re.search(r"MKL|oneDNN|MKL-DNN|OpenMP|CPU capability|BLAS_INFO", line)]
    info: dict[str, object] = {
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_build": [line if len(line) < 300 else _build_settings(line) for line in build],
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "numpy_simd": _numpy_simd(),
        "opencv_cpu_features": _opencv_features(),
        "env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
    }
    return info


def dataset_hash(root: str | Path, splits: tuple[str, ...] = ("train", "val")) -> dict[str, object]:
    """A stable content hash of a dataset folder, overall and per split.

    The rule: take every regular file under `root` except `dataset.json` (the generator's
    manifest, which names the command, not the data); its key is the path relative to `root` with
    `/` separators; the hash is SHA-256 over the lines `"<key>\\t<sha256 of the file's bytes>\\n"`
    in sorted key order. A split's hash does the same over `splits/<split>.txt`, `classes.txt`,
    `tags.txt` and the files whose stem is one of the split's ids. File times, permissions and
    the folder's location do not enter, so two folders with the same bytes hash the same.
    Reproduce it with `sha256sum` over the same files, sorted, as `key<TAB>digest` lines.

    Returns:
        `{"rule": "...", "sha256": hex over all files, "files": count, "bytes": total,
        "splits": {split: {"sha256", "files", "ids"}}}` (a split without a splits/ file is left out).
    """
    root = Path(root)
    digests = file_digests(root)
    total = sum((root / key).stat().st_size for key in digests)
    result: dict[str, object] = {
        "rule": "sha256 over sorted 'relative/path<TAB>sha256(bytes)' lines of every file but dataset.json",
        "sha256": _combine(digests),
        "files": len(digests),
        "bytes": total,
        "splits": {},
    }
    for split in splits:
        split_file = f"splits/{split}.txt"
        if split_file not in digests:
            continue
        ids = {line.strip() for line in (root / split_file).read_text().splitlines() if line.strip()}
        common = {split_file, "classes.txt", "tags.txt"}
        chosen = {k: v for k, v in digests.items() if k in common or ("/" in k and Path(k).stem in ids
                                                                        and not k.startswith("splits/"))}
        result["splits"][split] = {"sha256": _combine(chosen), "files": len(chosen), "ids": len(ids)}
    return result


def file_digests(root: str | Path) -> dict[str, str]:
    """`{relative posix path: sha256 hex of its bytes}` for every file under `root` but
    `dataset.json`, in sorted order (the per-file half of `dataset_hash`)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder {str(root)!r} does not exist")
    digests: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = path.relative_to(root).as_posix()
        if key != "dataset.json":
            digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def provenance(*, repo: str | Path | None = None, data: str | Path | None = None) -> dict[str, object]:
    """Everything above in one dict: `{"git", "packages", "cpu", "math", "dataset_hash"?}`.

    Args:
        repo: a path inside the checkout whose commit is recorded (default: this package's).
        data: a dataset folder to hash, or None.
    """
    record: dict[str, object] = {
        "git": git_state(repo if repo is not None else Path(__file__).resolve().parent),
        "packages": installed_packages(),
        "cpu": cpu_features(),
        "math": math_libraries(),
    }
    if data is not None:
        record["dataset_hash"] = dataset_hash(data)
    return record


def _combine(digests: dict[str, str]) -> str:
    lines = "".join(f"{key}\t{digest}\n" for key, digest in sorted(digests.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _build_settings(line: str) -> str:
    """The few `Build settings:` entries that matter for CPU numerics (the line is ~2 kB)."""
    keep = [s.strip() for s in line.split(",") if re.match(r"\s*(BLAS_INFO|LAPACK_INFO|USE_MKL|USE_MKLDNN|USE_OPENMP|"
                                                            r"PERF_WITH_AVX\w*|TORCH_VERSION|COMMIT_SHA)=", s)]
    return "Build settings: " + ", ".join(keep)


def _numpy_simd() -> dict[str, list[str]] | None:
    try:
        from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
        except ImportError:
            return None
    return {
        "baseline": list(__cpu_baseline__),
        "found": [f for f in __cpu_dispatch__ if __cpu_features__.get(f)],
        "not_found": [f for f in __cpu_dispatch__ if not __cpu_features__.get(f)],
    }


def _opencv_features() -> str | None:
    """OpenCV's build-time SIMD baseline and dispatched code paths (it picks among them at run
    time from the CPU, unless OPENCV_CPU_DISABLE says otherwise)."""
    try:
        import cv2
    except ImportError:
        return None
    lines = [" ".join(line.split()) for line in cv2.getBuildInformation().splitlines()
             if line.strip().startswith(("Baseline:", "Dispatched code generation:"))]
    return "; ".join(lines) or None
