"""What a results file or model card records about where it was produced: machine and versions."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

__all__ = ["library_versions", "machine_info"]

_PACKAGES = ("wsdeploy", "torch", "numpy", "opencv-python-headless", "onnx", "onnxruntime")


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of Python and the packages that shape results, e.g. {'torch': '2.13.0'}.

    Packages that are not installed are left out.
    """
    versions = {"python": platform.python_version()}
    for name in _PACKAGES + tuple(extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_info() -> dict[str, object]:
    """CPU, core count, memory, OS and, when CUDA is present, the GPU name and driver."""
    info: dict[str, object] = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": sys.version.split()[0],
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    import torch  # local: keep `import wsdeploy.environment` light

    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None
