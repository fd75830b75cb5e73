"""Which torch device a notebook runs on: the ``device`` parameter every notebook has."""

from __future__ import annotations

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | object = "auto"):
    """``"auto"`` -> ``cuda`` when a GPU is usable, else ``cpu``; ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Returns a ``torch.device``. Raises ``ValueError`` naming the fix for an unknown name, or for
    ``cuda`` on a machine where ``torch.cuda.is_available()`` is False (a CPU-only torch build, no
    driver, or no GPU), rather than failing later inside a kernel launch.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be one of {'|'.join(DEVICE_CHOICES)} (or 'cuda:N'), got {device!r}")
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        index = name.partition(":")[2]
        if index and not index.isdigit():
            raise ValueError(f"device {device!r}: the GPU index must be a whole number, as in 'cuda:0'")
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was asked for, but torch {torch.__version__} sees no usable GPU "
                f"(built for CUDA {torch.version.cuda or 'none: a CPU-only build'}). "
                "Use device='auto' (cuda when present, else cpu) or device='cpu'."
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s), "
                f"numbered 0..{torch.cuda.device_count() - 1}"
            )
        return torch.device(name)
    raise ValueError(f"unknown device {device!r}; choose one of {'|'.join(DEVICE_CHOICES)} (or 'cuda:N')")
