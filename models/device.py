"""Device strings: "cpu", "cuda", "cuda:1", ... or "auto" (CUDA when available, else the CPU)."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch.device for ``device``; "auto" or None picks CUDA if available. Asking for CUDA without it fails."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available")
    return dev
