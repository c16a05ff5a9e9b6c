"""The ``training`` block: what a checkpoint — and every record evaluated from it — says about how its training went.

``jembench train`` writes it into every checkpoint (:func:`jembench.reference_models.train_state.training_block`), and
:meth:`jembench.models.LoadedCheckpoint.describe` copies it into the ``model`` section of each record::

    "training": {"divergence": "recover",          # how divergence was handled: recover | stop
                 "recovered_divergences": 1,        # rollbacks the run needed (0: it trained cleanly)
                 "recovered_at": [1412],            # where each of those divergences began
                 "stopped_at": 2280,                # only when the run ended on divergence
                 "stop_reasons": ["|loss| > loss_bound"],
                 "selected_on": {"split": "validation", "noise": 0.03, "accuracy": 91.2, "iteration": 9000}}
                                                    # only in best.pt: what chose it

A run that recovered from divergence is not the run the official code would have made (the official code stops
there): ``jembench eval`` prints a note under its tables (:func:`notes`) and the leaderboard flags its rows
(:func:`recovered`). Checkpoints written before the block existed still carry the divergence guard's count
(``extra.guard.recoveries``): :func:`from_checkpoint` reads it from there. The block comes from files a stranger may
have written, so :func:`problem` checks every field's type before anything is shown.
"""

from __future__ import annotations

from typing import Any, TypeGuard

MAX_ITEMS = 10_000  # entries of a list field (a real run has a handful)
MAX_TEXT = 256  # characters of a text field


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short_text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def problem(block: Any) -> str | None:
    """What is wrong with a ``training`` block (None: nothing). Required: ``recovered_divergences``, an integer
    >= 0; the other fields are optional and type-checked; unknown fields are allowed."""
    if not isinstance(block, dict):
        return f"'training' is {type(block).__name__}, not a mapping"
    n = block.get("recovered_divergences")
    if not _is_int(n) or n < 0:
        return f"training 'recovered_divergences' is {str(n)[:40]!r}, not an integer >= 0"
    if "divergence" in block and not _short_text(block["divergence"]):
        return "training 'divergence' is not a short string"
    for key in ("recovered_at", "stop_reasons"):
        items = block.get(key, [])
        kind = _is_int if key == "recovered_at" else _short_text
        if not isinstance(items, list) or len(items) > MAX_ITEMS or not all(kind(v) for v in items):
            return f"training {key!r} is not a list of {'integers' if key == 'recovered_at' else 'short strings'}"
    if "stopped_at" in block and not _is_int(block["stopped_at"]):
        return "training 'stopped_at' is not an integer"
    selected = block.get("selected_on")
    if selected is not None:
        if (not isinstance(selected, dict) or not _short_text(selected.get("split"))
                or not all(_is_number(selected.get(k)) for k in ("noise", "accuracy"))
                or not _is_int(selected.get("iteration"))):
            return "training 'selected_on' is not {split, noise, accuracy, iteration}"
    return None


def from_checkpoint(state: dict[str, Any]) -> dict[str, Any] | None:
    """The ``training`` block of a jembench checkpoint (already checked by :func:`problem`), or, for one written
    before the block existed, the recovery count its divergence guard stored (``extra.guard``); None when the file
    says neither."""
    block = state.get("training")
    if isinstance(block, dict):
        return block
    guard = (state.get("extra") or {}).get("guard") if isinstance(state.get("extra"), dict) else None
    if not isinstance(guard, dict) or not _is_int(guard.get("recoveries")) or guard["recoveries"] < 0:
        return None
    events = guard.get("events")
    if not isinstance(events, list):
        events = []
    at = [e.get("first_bad_iteration") for e in events if isinstance(e, dict) and e.get("event") == "divergence"]
    return {"recovered_divergences": guard["recoveries"], "recovered_at": [i for i in at if _is_int(i)]}


def recovered(model: dict[str, Any]) -> int:
    """How many divergences the training of a record's ``model`` recovered from (0 when it does not say)."""
    block = model.get("training") if isinstance(model, dict) else None
    n = block.get("recovered_divergences") if isinstance(block, dict) else None
    return n if _is_int(n) and n > 0 else 0


def _iterations(values: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def notes(model: dict[str, Any]) -> list[str]:
    """The notes ``jembench eval`` prints under a record's table about its model's training: a run that recovered
    from divergence (the official code would have stopped there), one that ended on divergence, and a ``best.pt``
    chosen on the test split (its test numbers are optimistically biased). Text comes from the record: the caller
    escapes the record first."""
    block = model.get("training") if isinstance(model, dict) else None
    if not isinstance(block, dict) or problem(block) is not None:
        return []
    name, out = model.get("name", "the model"), []
    n = block["recovered_divergences"]
    if n:
        where = block.get("recovered_at") or []
        at = f" (beginning at iteration{'s' if len(where) > 1 else ''} {_iterations(where)})" if where else ""
        out.append(f"{name}: its training recovered from {n} divergence{'s' if n > 1 else ''}{at} by rolling back "
                   f"and retrying with a lower learning rate and more SGLD steps; the official code stops at the "
                   f"first one (train with a *-official preset to do the same)")
    if "stopped_at" in block:
        reasons = "; ".join(block.get("stop_reasons") or [])
        out.append(f"{name}: its training ended on divergence at iteration {block['stopped_at']}"
                   f"{f' ({reasons})' if reasons else ''}; this checkpoint holds the last good state before it")
    selected = block.get("selected_on")
    if isinstance(selected, dict) and selected.get("split") == "test":
        out.append(f"{name}: this checkpoint was chosen as best.pt on its test accuracy (as the SADA-JEM code "
                   f"does); numbers on the test split are optimistically biased — last.pt is the unbiased choice")
    return out
