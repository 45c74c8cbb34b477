"""What a result depends on, recorded next to it: versions, host, device."""
from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import torch

_LIBS = ("torch", "torchvision", "timm", "pyautoattack", "fvcore", "numpy", "pandas",
         "pyarrow", "scikit-learn", "perbench")


@functools.cache
def git_sha() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        sha = out.stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{sha}+dirty" if sha and dirty else sha
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def versions_json() -> str:
    found = {"python": platform.python_version(), "perbench_git": git_sha()}
    for lib in _LIBS:
        try:
            found[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            found[lib] = None
    return json.dumps(found, sort_keys=True)


def load_avg() -> float | None:
    """The 1-minute load average: timings mean little when it exceeds the cell's threads."""
    try:
        return os.getloadavg()[0]
    except OSError:  # not every platform has one
        return None


def host() -> str:
    return socket.gethostname()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
