"""Optional speed-ups of a model for evaluation and sampling: ``torch.compile`` and channels-last weights.

Both are opt-in (``jembench eval --compile`` / ``--channels-last``, ``evaluate(..., compile=True)``) and change
no result beyond float rounding: ``tests/test_fast_paths.py`` holds compiled logits and input gradients to
eager ones within a tolerance.

``torch.compile`` notes (measured on 2 CPU cores, ``benchmarks/README.md``):
* on this CPU it does not pay off for the WRNs: convolutions run the same oneDNN kernels either way and
  inductor's code for the rest of the compiled forward/backward is slower than eager (compiled SGLD ≈ 1.3–1.5×
  eager time with frozen weights); it is meant for GPUs, where fusing the elementwise work matters;
* the first call of each new input shape compiles (seconds to a minute on a CPU; a second batch size triggers
  one more, dynamic-shape, compile);
* compiled graphs support first-order input gradients (SGLD, the OOD gradient score) but not a double
  backward (``create_graph=True`` through the model): suites that differentiate through SGLD refinement
  (robustness) must run the eager model — see :data:`EAGER_ONLY_SUITES`;
* AOTAutograd's "donated buffers" forbid ``retain_graph=True`` in a backward of a compiled graph, which the
  OOD gradient score uses; :func:`maybe_compile` turns them off (a little memory, no speed difference here).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import cast

from torch import nn

from .errors import JembenchError

# suites that need a double backward through the model (differentiable SGLD refinement): always eager
EAGER_ONLY_SUITES = frozenset({"robustness"})


def compile_unavailable_reason() -> str | None:
    """Why ``torch.compile`` cannot run here (one line with the fix), or None when it can."""
    import torch

    if not hasattr(torch, "compile"):
        return f"torch.compile needs torch >= 2.0 (this is torch {torch.__version__}); upgrade torch or drop --compile"
    try:
        import torch._dynamo
    except Exception as exc:  # a broken or stripped torch build
        return f"torch.compile is unavailable in this torch build ({type(exc).__name__}: {exc}); drop --compile"
    try:
        supported = torch._dynamo.is_dynamo_supported()
    except Exception as exc:  # older torch raises instead of returning False
        supported, why = False, str(exc)
    else:
        why = ""
    if not supported:
        return (f"torch.compile does not support this platform / Python {sys.version.split()[0]} with torch "
                f"{torch.__version__}{f' ({why})' if why else ''}; drop --compile")
    cxx = os.environ.get("CXX")
    if not (shutil.which(cxx) if cxx else any(shutil.which(c) for c in ("g++", "c++", "clang++"))):
        return ("torch.compile (inductor) needs a C++ compiler on the CPU and none was found (g++, c++, clang++ "
                "or $CXX); install one (e.g. apt-get install g++) or drop --compile")
    return None


def maybe_compile(model: nn.Module, enabled: bool, freeze: bool = False, **compile_kwargs) -> nn.Module:
    """``torch.compile(model)`` when ``enabled`` (else ``model`` itself); a clear :class:`JembenchError` when
    torch.compile cannot run here. Compilation itself happens lazily, on the first call.

    ``freeze=True`` (evaluation) first turns off ``requires_grad`` of the parameters: a compiled backward
    computes every gradient it was traced with — eager ``autograd.grad(…, x)`` skips the weight gradients, a
    compiled graph traced with trainable weights does not — so input-gradient work (SGLD, the OOD gradient
    score) would otherwise also pay for the weight gradients."""
    if not enabled:
        return model
    reason = compile_unavailable_reason()
    if reason is not None:
        raise JembenchError(reason)
    import torch
    import torch._functorch.config as functorch_config

    if isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
        return model  # already compiled
    if freeze:
        model.requires_grad_(False)

    functorch_config.donated_buffer = False  # allow retain_graph=True (OOD gradient score) on compiled graphs
    # an nn.Module compiles to an OptimizedModule (an nn.Module); torch types the result as any callable
    return cast(nn.Module, torch.compile(model, **compile_kwargs))


def maybe_channels_last(model: nn.Module, enabled: bool) -> nn.Module:
    """Convert the model's 4-d weights to channels-last memory format (in place) when ``enabled``.

    Convolutions then run in NHWC for NCHW inputs too (PyTorch picks channels-last when input or weight is);
    oneDNN on x86 CPUs and cuDNN with tensor cores are faster that way for 3-channel 32×32 networks
    (benchmarks/README.md), not for the 1-channel 8×8 tiny networks.
    """
    if not enabled:
        return model
    import torch

    return model.to(memory_format=torch.channels_last)
