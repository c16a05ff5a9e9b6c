"""Timing hooks for one benchmark child process, installed from outside the script as ``sitecustomize``.

:mod:`benchmarks.official` copies this file as ``sitecustomize.py`` into a scratch folder and puts that folder
first on the child's ``PYTHONPATH``; Python imports it at start-up, before the script runs, so the script — an
official trainer, or ``python -m jembench train`` — runs unchanged and both sides are timed by the same code.
It imports nothing from this repository. Environment variables (all optional; without them it does nothing):

``JEMBENCH_BENCH_STEPS=FILE``
    a global optimizer step post-hook (``torch.optim.optimizer.register_optimizer_step_post_hook``) appends
    ``time.perf_counter()`` to FILE after every optimizer step: one line per training iteration for all three
    methods (SAM calls its base optimizer's ``step`` once per iteration, in ``second_step``).
``JEMBENCH_BENCH_WRAP=SPECS`` and ``JEMBENCH_BENCH_PHASES=FILE``
    comma-separated ``module:attr`` (time every call of that function) or ``module:attr:factory`` (time every
    call of the function it returns); each call appends ``start end`` to FILE. Examples: ``__main__:sample_q``,
    ``__main__:get_sample_q:factory``, ``jembench.reference_models.train_loop:draw_samples``. A spec is installed
    as soon as its target exists, checked at every torchvision integrity check (datasets are built before the trainers
    build their samplers) and before every optimizer step.
``JEMBENCH_BENCH_GATE=FIFO`` and ``JEMBENCH_BENCH_GO=FILE``
    lockstep: after appending its step timestamp the hook blocks until one byte arrives on FIFO, then appends
    ``time.perf_counter()`` to the GO file and returns. The parent releases two trainers one iteration at a
    time, alternately, so iteration k of one and iteration k of the other run back to back (the waiting one
    sleeps); an iteration's time is then its step timestamp minus the preceding GO timestamp.
``JEMBENCH_BENCH_NO_MD5=1``
    torchvision's ``check_integrity`` becomes a presence check (CIFAR pickles converted from another copy of
    the images have other MD5 sums than the originals; ``download=True`` would otherwise fetch the archive).

Timestamps are host clock reads with no device synchronisation: CPU runs only.
"""

import os
import sys
import time

STEPS_ENV, WRAP_ENV, PHASES_ENV, NO_MD5_ENV = ("JEMBENCH_BENCH_STEPS", "JEMBENCH_BENCH_WRAP", "JEMBENCH_BENCH_PHASES",
                                               "JEMBENCH_BENCH_NO_MD5")
GATE_ENV, GO_ENV = "JEMBENCH_BENCH_GATE", "JEMBENCH_BENCH_GO"
_pending = []  # (module, attr, factory) specs not installed yet
_gate = []  # the opened gate FIFO (lazily, at the first step)


def _append(path, line):
    with open(path, "a") as fh:
        fh.write(line)


def parse_specs(text):
    """``"m:a,m:b:factory"`` -> ``[("m", "a", False), ("m", "b", True)]``."""
    specs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        bits = part.split(":")
        if len(bits) not in (2, 3) or (len(bits) == 3 and bits[2] != "factory"):
            raise ValueError(f"bad {WRAP_ENV} entry {part!r}: use module:attr or module:attr:factory")
        specs.append((bits[0], bits[1], len(bits) == 3))
    return specs


def timed(fn, phases_file):
    def inner(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _append(phases_file, f"{start:.6f} {time.perf_counter():.6f}\n")

    inner.__wrapped__ = fn
    return inner


def timed_factory(factory, phases_file):
    def inner(*args, **kwargs):
        return timed(factory(*args, **kwargs), phases_file)

    inner.__wrapped__ = factory
    return inner


def install_pending():
    """Wrap every pending target that exists by now."""
    phases_file = os.environ.get(PHASES_ENV)
    if not phases_file:
        return
    for spec in list(_pending):
        module_name, attr, factory = spec
        module = sys.modules.get(module_name)
        if module is None or not hasattr(module, attr):
            continue
        fn = getattr(module, attr)
        setattr(module, attr, (timed_factory if factory else timed)(fn, phases_file))
        _pending.remove(spec)


def _install_from_env():
    steps_file = os.environ.get(STEPS_ENV)
    _pending.extend(parse_specs(os.environ.get(WRAP_ENV, "")))
    no_md5 = os.environ.get(NO_MD5_ENV) == "1"
    if not (steps_file or _pending or no_md5):
        return
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    gate = {"path": os.environ.get(GATE_ENV), "go": os.environ.get(GO_ENV)}

    def after_step(opt, args, kwargs):
        _append(steps_file, f"{time.perf_counter():.6f}\n")
        if gate["path"]:
            if not _gate:
                _gate.append(open(gate["path"], "rb", buffering=0))
            if not _gate[0].read(1):  # the parent closed the gate: run on ungated
                gate["path"] = None
            if gate["go"]:
                _append(gate["go"], f"{time.perf_counter():.6f}\n")

    if steps_file:
        register_optimizer_step_post_hook(after_step)
    if _pending:
        register_optimizer_step_pre_hook(lambda opt, args, kwargs: install_pending() if _pending else None)
    try:
        import torchvision.datasets.cifar as tv_cifar
        import torchvision.datasets.utils as tv_utils
    except ImportError:
        return
    original = tv_utils.check_integrity

    def check_integrity(fpath, md5=None):
        if _pending:
            install_pending()
        return os.path.isfile(fpath) if no_md5 else original(fpath, md5)

    tv_utils.check_integrity = check_integrity
    tv_cifar.check_integrity = check_integrity  # cifar.py imported the name itself


_install_from_env()
