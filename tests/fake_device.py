"""A fake accelerator for CPU CI: tensors on device ``fakegpu:N`` that compute on the CPU, and a monitor that fails
on what breaks or slows a real GPU run.

Why: no line of jembench can run on a GPU here, yet the CUDA paths must be right. A CUDA run fails where a CPU run
passes when an op mixes CPU and device tensors, when a CPU ``torch.Generator`` draws device tensors, or when
``.numpy()`` is called on a device tensor; it is slow where the host waits for the device (``.item()``,
``.tolist()``, ``bool(t)``, boolean-mask indexing, ``nonzero``, a blocking copy). On the CPU none of this shows.

How (torch's own extension points, nothing patched):

* the PrivateUse1 dispatch key is registered as a Python backend named ``fakegpu``
  (:func:`torch.utils.backend_registration._setup_privateuseone_for_python_backend`: device guard, hooks and a
  device module, so autograd, ``torch.device("fakegpu:1")``, ``Module.to`` and ``torch.random.fork_rng`` work);
* a tensor on it is a :class:`DeviceTensor`, a wrapper subclass (``_make_wrapper_subclass``) holding a CPU tensor
  ``elem``; ``__torch_dispatch__`` runs every aten op on the ``elem`` s and wraps the results. Factory functions
  (``torch.rand(..., device="fakegpu")``) reach it through ``empty`` kernels registered for PrivateUse1;
* each fake device has its own random stream (a CPU generator seeded by ``torch.manual_seed`` like a CUDA device's,
  saved and restored by ``fork_rng(device_type="fakegpu")``), so code that forgets to fork, save or seed the
  device stream behaves differently from an uninterrupted run, as it would on CUDA;
* :class:`Monitor` checks every op that touches a device tensor. **Violations** (raised at once, like CUDA's
  error, with the call site): an op mixing device tensors with CPU tensors of one or more dimensions (0-dim CPU
  tensors are scalars, as CUDA allows), or two devices; a CPU generator drawing device tensors; ``non_blocking``
  host-to-device copies from unpinned memory (nothing is pinned here; on CUDA they are not asynchronous).
  ``.numpy()`` on a device tensor raises torch's own TypeError. **Host syncs** are counted per call site (the
  innermost frame in jembench/ — jembench/reference_models/ included — or benchmarks/, as ``path:function``) and
  per hot-loop scope (a function on the stack that the test names): ``item`` (``_local_scalar_dense``: ``.item()``,
  ``bool()``, ``int()``, ``float()``), ``d2h`` (a copy to the CPU: ``.cpu()``, ``.tolist()``, ``.numpy()`` after
  ``.cpu()``), ``h2d`` (a blocking copy to the device: CUDA synchronises the stream after it) and ``data-dependent``
  (ops whose output shape the host must read: ``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``,
  ``bincount``, ``repeat_interleave`` without ``output_size``, ``equal``).

Use: ``with monitor(hot=(...), allowed=(...)) as mon: ...`` on device ``DEVICE`` (``fakegpu:0``), then
``mon.per_call(scope)`` (syncs per call of a hot-loop function), ``mon.all_syncs()``; ``allowed`` makes a sync at any
other call site a violation. Sites of helpers in :data:`_TRANSPARENT` (``jembench/devices.py``) are their callers'.
Hand-written because nothing in torch does this: ``torch.cuda.set_sync_debug_mode`` needs a GPU, and torch's
FakeTensor computes no values (jembench's loops branch on them).
Limits: no streams, so asynchrony is not simulated (a sync is counted where CUDA would wait, not timed); memory is
not modelled (``mem_get_info`` reports :data:`MEMORY`); autocast passes ops through uncast;
torch.compile, DDP and pinned memory are not available on the fake device.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import types
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch.utils._pytree import tree_leaves, tree_map

NAME = "fakegpu"
DEVICE = f"{NAME}:0"
N_DEVICES = 2
REPO = Path(__file__).resolve().parent.parent
_CODE_DIRS = tuple(str(REPO / d) + os.sep for d in ("jembench", "benchmarks"))
_SELF = str(Path(__file__).resolve())
# helpers whose syncs belong to their caller (the site is the frame that called them)
_TRANSPARENT = (str(REPO / "jembench" / "devices.py"),)
aten = torch.ops.aten


class DeviceMixing(RuntimeError):
    """What CUDA would raise (or silently pay for) and the fake device refuses."""


# ------------------------------------------------------------------------------------ the device module
class _Generators:
    """One CPU generator per fake device: the device's default random stream."""

    def __init__(self) -> None:
        self.gens = [torch.Generator() for _ in range(N_DEVICES)]
        for i, g in enumerate(self.gens):
            g.manual_seed(67_280_421_310_721 + i)

    def __getitem__(self, index: int | None) -> torch.Generator:
        return self.gens[index or 0]


GENERATORS = _Generators()


def _index(device) -> int:
    if device is None:
        return 0
    if isinstance(device, int):
        return device
    return torch.device(device).index or 0


def _device_module() -> types.ModuleType:
    """``torch.fakegpu``: what ``torch.manual_seed``, ``fork_rng`` and jembench's device helpers call."""
    mod = types.ModuleType(f"torch.{NAME}")
    mod.is_available = lambda: True
    mod.is_initialized = lambda: True
    mod._is_in_bad_fork = lambda: False
    mod.device_count = lambda: N_DEVICES
    mod.current_device = lambda: 0
    mod.get_rng_state = lambda device=None: GENERATORS[_index(device)].get_state()
    mod.set_rng_state = lambda state, device=None: GENERATORS[_index(device)].set_state(state)
    mod.get_rng_state_all = lambda: [g.get_state() for g in GENERATORS.gens]
    mod.set_rng_state_all = lambda states: [g.set_state(s) for g, s in zip(GENERATORS.gens, states)]
    mod.manual_seed = lambda seed: GENERATORS[0].manual_seed(int(seed))
    mod.manual_seed_all = lambda seed: [g.manual_seed(int(seed)) for g in GENERATORS.gens]
    mod.synchronize = lambda device=None: _sync("synchronize")
    mod.get_device_name = lambda device=None: f"fake accelerator {_index(device)} (CPU)"
    mod.mem_get_info = lambda device=None: (MEMORY["free"], MEMORY["total"])
    mod.get_amp_supported_dtype = lambda: [torch.float16, torch.bfloat16]  # torch.autocast(NAME) asks
    return mod


MEMORY = {"free": 8 << 30, "total": 8 << 30}  # bytes that mem_get_info reports (a test may lower "free")


_LIBRARIES: list = []  # torch.library registrations live as long as their Library object


@functools.cache
def install() -> str:
    """Register the fake device once per process (PrivateUse1 can be renamed only once); returns its name."""
    from torch.utils.backend_registration import _setup_privateuseone_for_python_backend

    if torch._C._get_privateuse1_backend_name() != NAME:
        _setup_privateuseone_for_python_backend(NAME, backend_module=_device_module())

    @torch.library.impl("aten::empty.memory_format", "privateuseone")
    def _empty(size, *, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
        elem = torch.empty(size, dtype=dtype, memory_format=memory_format or torch.contiguous_format)
        return DeviceTensor(elem, device)

    @torch.library.impl("aten::empty_strided", "privateuseone")
    def _empty_strided(size, stride, *, dtype=None, layout=None, device=None, pin_memory=None):
        return DeviceTensor(torch.empty_strided(size, stride, dtype=dtype), device)

    # autocast has no kernels for a PrivateUse1 backend: ops pass through it uncast (bf16 is not modelled)
    _LIBRARIES.append(torch.library.Library("_", "IMPL"))
    _LIBRARIES[-1].fallback(torch.library.fallthrough_kernel, dispatch_key="AutocastPrivateUse1")

    # factories that torch builds as empty(0) + an out= kernel that resizes it: a wrapper's sizes are fixed when it
    # is made, so these are computed whole on the CPU and wrapped (a resize anywhere else fails loudly, below)
    for overload in ("arange", "arange.start", "arange.start_step"):
        torch.library.impl(f"aten::{overload}", "privateuseone")(_factory(overload))

    @torch.library.impl("aten::_copy_from", "privateuseone")
    def _copy_from(src, dst, non_blocking=False):
        # torch.tensor(data, device=...) and indexing with a Python list copy below the Python key
        return _transfer(aten.copy_.default, (dst, src, non_blocking), {})

    return NAME


def _factory(overload: str):
    name, _, variant = overload.partition(".")
    op = getattr(getattr(aten, name), variant or "default")

    def kernel(*args, device=None, **kwargs):
        return DeviceTensor(op(*args, device="cpu", **kwargs), device)

    return kernel


# --------------------------------------------------------------------------------------------- monitor
@dataclass
class Monitor:
    """What happened on the fake device while it was active: host syncs per (scope, call site, kind)."""

    hot: tuple[str, ...] = ()  # "path:qualname" of hot-loop functions; a sync under one is counted in its scope
    allowed: frozenset | None = None  # call sites ("path:qualname") allowed to sync; None = any
    strict: bool = True  # raise at the first violation (False: collect them in ``violations``)
    syncs: Counter = field(default_factory=Counter)  # (scope or "", site, kind) -> count
    violations: list = field(default_factory=list)
    ops: int = 0

    lines: Counter = field(default_factory=Counter)  # (site:line, kind) -> count, for reading a report
    calls: Counter = field(default_factory=Counter)  # hot scope -> times it was entered

    def record(self, kind: str) -> None:
        site, scope, line = _site(self.hot)
        self.syncs[(scope, site, kind)] += 1
        self.lines[(f"{site}:{line}", kind)] += 1
        if self.allowed is not None and site not in self.allowed:
            _violation(f"a host sync ({kind}) where none is allowed")

    def syncs_in(self, scope: str) -> dict[tuple[str, str], int]:
        """{(site, kind): count} of the syncs made under hot-loop function ``scope``."""
        return {(site, kind): n for (sc, site, kind), n in self.syncs.items() if sc == scope}

    def per_call(self, scope: str) -> dict[tuple[str, str], float]:
        """{(site, kind): syncs per call} of hot scope ``scope`` (its total over the times it was entered)."""
        calls = self.calls[scope]
        return {key: n / calls for key, n in self.syncs_in(scope).items()} if calls else {}

    def all_syncs(self) -> dict[tuple[str, str], int]:
        out: Counter = Counter()
        for (_, site, kind), n in self.syncs.items():
            out[(site, kind)] += n
        return dict(out)


class _State:
    monitor: Monitor | None = None  # process-wide: autograd runs backward passes in its own threads


_STATE = _State()


def _active() -> Monitor | None:
    return _STATE.monitor


@contextlib.contextmanager
def monitor(hot: tuple[str, ...] = (), strict: bool = True, allowed: Iterable[str] | None = None
            ) -> Iterator[Monitor]:
    """Install the fake device and count what happens on it (one monitor at a time). ``allowed``: the call sites
    where a host sync is allowed (a sync anywhere else is a violation); ``hot``: functions whose calls and syncs
    are counted on their own (:meth:`Monitor.per_call`)."""
    install()
    mon = Monitor(hot=tuple(hot), strict=strict, allowed=None if allowed is None else frozenset(allowed))
    previous, _STATE.monitor = _active(), mon
    try:
        with contextlib.ExitStack() as stack:
            # backward passes in the calling thread: autograd's per-device worker threads are sized by the devices
            # known when the first backward of the process ran, which may precede this fake device
            stack.enter_context(torch.autograd.set_multithreading_enabled(False))
            for scope in mon.hot:
                stack.enter_context(_counting_calls(mon, scope))
            yield mon
    finally:
        _STATE.monitor = previous


@contextlib.contextmanager
def _counting_calls(mon: Monitor, scope: str) -> Iterator[None]:
    """Count the calls of the function ``path:qualname`` (a module function or a class's method) by wrapping it
    where it is looked up (its module or class) for the duration; the function itself runs unchanged."""
    path, _, qualname = scope.partition(":")
    target = str(REPO / path)
    owner = next((m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == target), None)
    if owner is None:
        owner = importlib.import_module(path.removesuffix(".py").removesuffix("/__init__").replace("/", "."))
    *outer, attr = qualname.split(".")
    for part in outer:
        owner = getattr(owner, part)
    original = owner.__dict__[attr]

    @functools.wraps(original)
    def counted(*args, **kwargs):
        mon.calls[scope] += 1
        return original(*args, **kwargs)

    setattr(owner, attr, counted)
    try:
        yield
    finally:
        setattr(owner, attr, original)


def _site(hot: tuple[str, ...]) -> tuple[str, str, int]:
    """(call site, hot-loop scope, line): the innermost project frame as ``path:qualname`` (a test file's frame
    when no project frame calls), the outermost frame on the stack that is one of ``hot`` ("" when none), and
    the call site's line number."""
    frame = sys._getframe(2)
    site = scope = ""
    line = 0
    while frame is not None:
        filename = frame.f_code.co_filename
        outside = (filename == _SELF or filename in _TRANSPARENT or filename.startswith(_TORCH_DIR)
                   or "site-packages" in filename)
        if outside:
            pass
        elif filename.startswith(_CODE_DIRS) or (not site and filename.startswith(str(REPO))):
            name = f"{os.path.relpath(filename, REPO)}:{frame.f_code.co_qualname}"
            if not site:
                site, line = name, frame.f_lineno
            if name in hot:
                scope = name
        frame = frame.f_back
    return site or "<unknown>", scope, line


_TORCH_DIR = str(Path(torch.__file__).resolve().parent) + os.sep


def _sync(kind: str) -> None:
    mon = _active()
    if mon is not None:
        mon.record(kind)


def _violation(message: str) -> None:
    """Raise :class:`DeviceMixing` naming the call site (or, with a non-strict monitor, note it and go on)."""
    site, _, line = _site(())
    error = DeviceMixing(f"{message} (at {site}, line {line})")
    mon = _active()
    if mon is not None and not mon.strict:
        mon.violations.append(str(error))
        return
    raise error


# ------------------------------------------------------------------------------------- the tensor type
_DATA_DEPENDENT = {
    aten.nonzero.default, aten.nonzero_numpy.default, aten.masked_select.default, aten._unique2.default,
    aten.unique_dim.default, aten.unique_consecutive.default, aten._unique.default, aten.bincount.default,
    aten.equal.default, aten.repeat_interleave.Tensor, aten.argwhere.default,
}
_TRANSFERS = {aten._to_copy.default, aten.copy_.default}


@functools.cache
def _aliases(func) -> tuple:
    """Per return: the (position, name, kwarg_only) of the argument it writes into, or None (a fresh tensor)."""
    args = func._schema.arguments
    out = []
    for ret in func._schema.returns:
        target = None
        if ret.alias_info is not None and ret.alias_info.is_write:
            for j, a in enumerate(args):
                if a.alias_info is not None and a.alias_info.before_set == ret.alias_info.before_set:
                    target = (j, a.name, a.kwarg_only)
                    break
        out.append(target)
    return tuple(out)


@functools.cache
def _draws(func) -> bool:
    return any(a.name == "generator" for a in func._schema.arguments)


def _unwrap(t):
    return t.elem if isinstance(t, DeviceTensor) else t


class DeviceTensor(torch.Tensor):
    """A tensor on a fake device: metadata on ``fakegpu:N``, values in the CPU tensor ``elem``."""

    elem: torch.Tensor
    # libraries that recognise torch tensors by their type's module (eagerpy, under foolbox 3) see what this stands
    # for: a torch tensor on an accelerator
    __module__ = f"torch.{NAME}"

    @staticmethod
    def __new__(cls, elem: torch.Tensor, device):
        device = torch.device(device)
        if device.index is None:
            device = torch.device(device.type, 0)
        r = torch.Tensor._make_wrapper_subclass(cls, elem.size(), strides=elem.stride(),
                                                storage_offset=elem.storage_offset(), dtype=elem.dtype,
                                                layout=elem.layout, device=device, requires_grad=False)
        r.elem = elem
        return r

    def __repr__(self) -> str:
        return f"DeviceTensor({self.elem!r}, device='{self.device}')"

    def tolist(self):
        """``Tensor.tolist`` copies to the host (a sync); torch refuses it for subclasses, so it is spelled here."""
        _sync("d2h")
        return self.elem.tolist()

    def numpy(self, *, force: bool = False):
        """What torch raises for a CUDA tensor (``force=True`` copies to the host first, as torch does)."""
        if not force:
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to copy "
                            f"the tensor to host memory first.")
        return self.cpu().numpy()

    def __reduce_ex__(self, proto):
        """Pickled as a device tensor is (``torch.save`` of a CUDA tensor): its CPU values and its device."""
        return (torch._utils._rebuild_device_tensor_from_cpu_tensor,
                (self.detach().cpu(), self.dtype, str(self.device), self.requires_grad))

    def __deepcopy__(self, memo):
        out = DeviceTensor(self.elem.clone(), self.device)
        out.requires_grad_(self.requires_grad)
        for key, value in self.__dict__.items():
            if key != "elem":
                setattr(out, key, value)
        memo[id(self)] = out
        return out

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        mon = _active()
        if mon is not None:
            mon.ops += 1
        if func in _TRANSFERS:
            return _transfer(func, args, kwargs)
        if func in (aten._local_scalar_dense.default, aten.is_nonzero.default):  # .item(), bool(), int(), float()
            _sync("item")
            return func(args[0].elem)
        devices = set()
        for a in tree_leaves((args, kwargs)):
            if isinstance(a, DeviceTensor):
                devices.add(a.device)
            elif isinstance(a, torch.Tensor) and a.dim() > 0:
                _violation(f"{func} mixes a CPU tensor of shape {tuple(a.shape)} with {NAME} tensors")
        if len(devices) > 1:
            _violation(f"{func} mixes tensors on {', '.join(sorted(map(str, devices)))}")
        device = next(iter(devices))
        if "device" in kwargs and kwargs["device"] is not None:
            target = torch.device(kwargs["device"])
            kwargs = dict(kwargs, device="cpu")
            if target.type == "cpu":
                device = None
            else:
                device = target
        if _draws(func):
            gen = kwargs.get("generator")
            if gen is not None and gen.device.type == "cpu" and device is not None:
                _violation(f"{func} draws {NAME} tensors from a CPU torch.Generator")
            if gen is None and device is not None:
                kwargs = dict(kwargs, generator=GENERATORS[device.index])
        if func in _DATA_DEPENDENT or (func in (aten.index.Tensor, aten.index_put_.default,
                                               aten._index_put_impl_.default) and _bool_index(args[1])):
            _sync("data-dependent")
        if device is not None and not _draws(func) and torch.Tag.nondeterministic_seeded in func.tags:
            with _device_stream(device):  # randn_like & co. take no generator: the default one is swapped
                out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        else:
            out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        aliases = _aliases(func)
        if any(aliases):
            outs = out if isinstance(out, tuple) else (out,)
            fixed = []
            for value, alias in zip(outs, aliases):
                if alias is None:
                    fixed.append(_wrap(value, device))
                else:
                    j, name, kw_only = alias
                    target = kwargs[name] if kw_only or j >= len(args) else args[j]
                    if isinstance(target, DeviceTensor) and target.shape != target.elem.shape:
                        raise DeviceMixing(f"{func} resized a {NAME} tensor, which the fake device cannot do (its "
                                           f"sizes are fixed); compute it another way in tests/fake_device.py")
                    fixed.append(target)
            return tuple(fixed) if isinstance(out, tuple) else fixed[0]
        if func.is_view and torch.is_inference_mode_enabled():
            # a view shares its base's version counter, so it is an inference tensor iff its base is one
            with torch.inference_mode(args[0].is_inference()):
                return _wrap(out, device)
        return _wrap(out, device)


@contextlib.contextmanager
def _device_stream(device: torch.device) -> Iterator[None]:
    """Run a block whose draws come from torch's default (CPU) generator on the fake device's stream instead."""
    gen, cpu = GENERATORS[device.index], torch.default_generator.get_state()
    torch.default_generator.set_state(gen.get_state())
    try:
        yield
    finally:
        gen.set_state(torch.default_generator.get_state())
        torch.default_generator.set_state(cpu)


def _bool_index(indices) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


def _wrap(out, device):
    if device is None:
        return out
    return tree_map(lambda t: DeviceTensor(t, device) if type(t) is torch.Tensor else t, out)


def _transfer(func, args, kwargs):
    """``_to_copy`` and ``copy_``: the only ops allowed to take CPU and device tensors together."""
    if func is aten._to_copy.default:
        src = args[0]
        target = kwargs.get("device")
        target = src.device if target is None else torch.device(target)
        plain = dict(kwargs, device="cpu")
        if target.type == "cpu":
            _sync("d2h")
            return func(src.elem, **plain)
        return DeviceTensor(func(src.elem, **plain), target)
    dst, src = args[0], args[1]
    non_blocking = bool(args[2]) if len(args) > 2 else bool(kwargs.get("non_blocking", False))
    if isinstance(dst, DeviceTensor) and isinstance(src, DeviceTensor):
        if dst.device != src.device and src.dim() > 0 and dst.dim() > 0:
            pass  # a device-to-device copy: allowed, as on CUDA
        dst.elem.copy_(src.elem)
        return dst
    if isinstance(dst, DeviceTensor):  # host to device
        if non_blocking and not src.is_pinned():
            _violation("a non_blocking host-to-device copy from unpinned memory (it is synchronous on CUDA; "
                             "pin the memory or drop non_blocking)")
        if not non_blocking:
            _sync("h2d")
        dst.elem.copy_(src)
        return dst
    _sync("d2h")  # device to host
    dst.copy_(src.elem)
    return dst
