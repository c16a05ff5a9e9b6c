"""The model under evaluation, watched while a suite runs: its first real batch must give finite logits, and a
forward pass of user code that fails becomes one line instead of a traceback.

Why: a module whose weights are finite can still return NaN logits on real images (a ``log`` of a negative
input, an overflow); argmax of NaN is class 0, so accuracy would silently read as chance (10 % on CIFAR-10) and
every other suite would score garbage. Weights are checked when a checkpoint is loaded
(:func:`jembench.evaluation.check_model`, which also probes two blank images); this checks what the network makes
of the data, on the first batch a suite feeds it. And a ``--model`` factory's network may pass that two-image
probe yet fail on a full batch (a hard-coded batch size, a reshape): that is the user's code failing on the
user's input, reported as ``--model ...: the network fails on a batch of 256x3x32x32 images (...)``. Running out
of memory is the same line for every model, with the fix (a smaller ``--batch-size``).

The watch is an instance attribute ``forward`` around the module's own (``nn.Module.__call__`` calls
``self.forward``), removed afterwards: the model object, its state dict and its hooks are unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from .errors import JembenchError


def _shape(args: tuple) -> str:
    x = next((a for a in args if isinstance(a, torch.Tensor)), None)
    return "x".join(map(str, x.shape)) if x is not None else "?"


@contextlib.contextmanager
def guarded_forward(model: nn.Module, what: str, user_code: bool) -> Iterator[None]:
    """Within the block: the first forward pass whose output is a tensor must be finite (else a
    :class:`JembenchError` naming ``what``); with ``user_code``, any exception of the forward pass becomes a
    one-line error naming ``what`` and the batch shape; out-of-memory is one for every model."""
    own = model.__dict__.get("forward")
    inner = model.forward
    checked = [False]

    def forward(*args: Any, **kwargs: Any):
        try:
            out = inner(*args, **kwargs)
        except JembenchError:
            raise
        except torch.OutOfMemoryError:
            raise JembenchError(f"{what}: out of memory on a batch of {_shape(args)} images; pass a smaller "
                                f"--batch-size") from None
        except Exception as exc:
            if not user_code:
                raise
            text = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise JembenchError(f"{what}: the network fails on a batch of {_shape(args)} images "
                                f"({type(exc).__name__}: {text}) although it passed the 2-image probe; fix its "
                                f"forward for any batch size, or pass a --batch-size it takes") from None
        if not checked[0] and isinstance(out, torch.Tensor):
            checked[0] = True
            finite = torch.isfinite(out.detach())
            if not bool(finite.all()):
                bad = int((~finite).flatten(1).any(1).sum()) if out.dim() > 1 else int((~finite).sum())
                raise JembenchError(f"{what}: the network's logits are NaN or Inf for {bad} of the {len(out)} "
                                    f"images of the first batch ({_shape(args)}), although its weights are "
                                    f"finite; such logits cannot be scored (argmax of NaN is class 0) — fix the "
                                    f"model")
        return out

    model.forward = forward
    try:
        yield
    finally:
        if own is None:
            del model.forward
        else:
            model.forward = own
