"""Process-wide torch settings for compute commands (train, eval, demo, bench)."""

from __future__ import annotations


def configure_torch() -> None:
    """Flush denormal floats to zero: SGLD chains and attacks through refinement drive activations into the
    denormal range, where CPU arithmetic is several times slower (measured 3x on a K=10 refinement); the
    change in results is below float32 resolution of the values that matter."""
    import torch

    torch.set_flush_denormal(True)


def require_device(device: str):
    """``torch.device(device)``, or a one-line :class:`~jembench.errors.JembenchError` when the name is malformed
    or the device is not there (``--device cuda`` on a machine without a GPU) — checked before anything is
    written."""
    import torch

    from .errors import JembenchError

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise JembenchError(f"--device {device!r} is not a torch device ({exc}); use cpu, cuda, cuda:1, mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise JembenchError(f"--device {device} requested but no CUDA GPU is available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise JembenchError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here; pick "
                            f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise JembenchError(f"--device {device} requested but MPS is not available here; use --device cpu")
    return dev
