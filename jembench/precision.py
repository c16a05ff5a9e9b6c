"""The arithmetic a run uses, as one explicit and recorded setting: ``precision`` = ``fp32`` | ``tf32`` | ``bf16``.

Why explicit: PyTorch's own defaults differ by operation and by version. Since 1.12 float32 matrix products are
IEEE fp32 by default but cuDNN convolutions run in TF32 (10-bit mantissa) on Ampere and newer GPUs — so the SGLD
gradients, the classifier and the Inception features of a default run are TF32 convolutions, and nothing said so.
The papers' code ran torch 1.3.1 (JEMPP requirements.txt:5), 1.5.1 (SADAJEM requirements.txt:7) and, for JEM
(last commit December 2019), a torch of the same era: TF32 did not exist before torch 1.7, so every product and
convolution was IEEE fp32. That is the default here (``fp32``); ``tf32`` allows TF32 in matrix products and cuDNN
convolutions (faster on Ampere+, different numbers); ``bf16`` runs forward passes under bf16 autocast (with TF32
for what autocast leaves in fp32) — an opt-in that changes results, recorded in every record and checkpoint.

``cudnn.benchmark`` (let cuDNN time its convolution algorithms for each new input shape and keep the fastest) is
on for CUDA runs, as in every official script (train_wrn_ebm.py:29, train_jempp.py:27, train_sadajem.py:32 and
their eval scripts): shapes are fixed within a run, so the search is paid once. It picks among algorithms that
compute the same convolution, so results may differ in the last bits between runs; it is recorded.

:func:`scope` sets all of this for a block and restores the previous settings after it (the Python API does not
leave a caller's process changed); :func:`settings` is what a record stores.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "tf32", "bf16")
DEFAULT = "fp32"
HELP = ("arithmetic: fp32 (IEEE float32 everywhere: what the papers' torch 1.3-1.5 computed; the default), tf32 "
        "(TF32 matrix products and cuDNN convolutions on Ampere+ GPUs: faster, other numbers) or bf16 (forward passes "
        "under bfloat16 autocast: an opt-in that changes results); recorded")
_AUTOCAST = {"bf16": "bfloat16"}  # torch dtype names (this module is imported before torch by the settings)
_active: list[str] = []  # the precision of the innermost active scope


def check(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a one-line error."""
    if precision not in PRECISIONS:
        from .errors import JembenchError

        raise JembenchError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}; use fp32 (the papers' "
                            f"arithmetic, the default), tf32 or bf16")
    return precision


def _flags() -> tuple[str, str, bool]:
    import torch

    conv = torch.backends.cudnn.conv  # type: ignore[attr-defined]  # torch's stubs lack cudnn.conv (2.14 has it)
    return torch.backends.cuda.matmul.fp32_precision, conv.fp32_precision, torch.backends.cudnn.benchmark


def _set_flags(matmul: str, conv: str, benchmark: bool) -> None:
    import torch

    # the fp32_precision API only: mixing it with the legacy allow_tf32 flags makes torch refuse to read them
    torch.backends.cuda.matmul.fp32_precision = matmul
    torch.backends.cudnn.conv.fp32_precision = conv  # type: ignore[attr-defined]  # torch's stubs lack cudnn.conv
    torch.backends.cudnn.benchmark = benchmark


@contextlib.contextmanager
def scope(precision: str, device: str | torch.device) -> Iterator[None]:
    """Run a block with ``precision``'s TF32 flags, ``cudnn.benchmark`` on for CUDA, and bf16 autocast on
    ``device`` for ``bf16``; every flag is put back afterwards."""
    import torch

    check(precision)
    dev = torch.device(device)
    saved = _flags()
    tf32 = "tf32" if precision in ("tf32", "bf16") else "ieee"
    _set_flags(tf32, tf32, dev.type == "cuda" or saved[2])
    _active.append(precision)
    try:
        if precision in _AUTOCAST:
            with torch.autocast(dev.type, dtype=getattr(torch, _AUTOCAST[precision])):
                yield
        else:
            yield
    finally:
        _active.pop()
        _set_flags(*saved)


def current() -> str:
    """The precision of the innermost :func:`scope` (the default outside one)."""
    return _active[-1] if _active else DEFAULT


def settings(device: str | torch.device) -> dict[str, Any]:
    """The numerical settings in force, as a record stores them: ``precision`` and what it means on this device —
    TF32 for matrix products / cuDNN convolutions (CUDA only), ``cudnn.benchmark``, the autocast dtype."""
    import torch

    dev = torch.device(device)
    matmul, conv, benchmark = _flags()
    cuda = dev.type == "cuda"
    autocast = _AUTOCAST.get(current())
    return {"precision": current(),
            "tf32_matmul": cuda and (matmul == "tf32" or (matmul == "none"
                                                          and torch.get_float32_matmul_precision() != "highest")),
            "tf32_cudnn": cuda and conv != "ieee",
            "cudnn_benchmark": cuda and bool(benchmark),
            "autocast": autocast}
