"""User-facing errors: one line that names the input and the fix; the CLI turns them into exit codes.

Exit codes of the ``jembench`` command (each means one thing across commands): 0 success; 1 ``check`` found a
regression; 2 unusable input (:class:`JembenchError`: a bad argument, a malformed or missing file); 3 ``train``
stopped at a divergence (the official flavour of a preset); 4 ``check``'s baseline cannot judge the records
(:class:`BaselineUnusable`: measured under another protocol, missing the records' model or suite, its
per-input evidence missing for a paired check, or stale); 130 interrupted.
"""


class JembenchError(Exception):
    """A problem with the user's input or environment (not a bug). Message: what is wrong + how to fix it."""

    exit_code = 2


class BaselineUnusable(JembenchError):
    """``jembench check --baseline``: the baseline cannot judge these records (exit 4) — the inputs are readable,
    but the baseline was measured under another protocol, has no record for a model / suite / dataset, lacks the
    per-input evidence a paired check needs, or is stale (:mod:`jembench.recipe`). Regenerate the baseline."""

    exit_code = 4
