"""The one way jembench opens a file that someone else wrote.

Checkpoints, replay buffers, class statistics, weights, records, published CSVs, protocols, tolerance files,
caches, partial results, evidence sidecars, figures and images all reach jembench from users and strangers: a
paper's release, a pull request, a folder scraped from somewhere, a CI template. Every such file is read through
this module, which promises, before a byte is parsed:

* **Regular files only.** The file is opened once with ``O_NONBLOCK`` (so opening a FIFO without a writer, or a
  device, cannot hang) and checked with ``fstat`` on that very descriptor (no window between check and read): a
  folder, FIFO, socket or device is a one-line :class:`~jembench.errors.JembenchError` naming the path and what
  it is. The descriptor is then switched back to blocking reads and handed to the parser.
* **A size cap per kind** (:data:`KINDS`), checked against ``fstat`` before reading and enforced while reading
  (a file that grows, or a ``/proc`` file that reports size 0, is cut off at the cap).
* **Folder walks that cannot loop or escape** (:func:`walk`): symlinked folders are never followed (a link back
  to a parent, or to ``/``, is skipped with a note); a symlinked file is followed only when its target is a
  regular file inside the folder being scanned, and then only once per target, so a link back into its own
  folder cannot duplicate an image; bind-mount cycles are cut by remembering every folder's (device, inode).
* **Image decoding limits** (:func:`open_image`): a pixel cap checked from the header before decoding (PIL's
  decompression-bomb guard, as an error instead of a warning), and bit depth handled: 16-bit greyscale PNGs are
  scaled to 8 bits (PIL would clip them to near-white in ``convert("RGB")``); 32-bit integer and float images
  are refused with a line saying so.

Parsers here: :func:`load_torch` (``torch.load(..., weights_only=True)`` unless the user passes
``--trust-checkpoint``), :func:`read_json`, :func:`read_toml`, :func:`read_csv` (pandas), :func:`load_npz`
(``numpy.load(allow_pickle=False)``), :func:`open_image` (PIL) and :func:`read_bytes` / :func:`read_text` for the
rest. Each failure is one line naming the file, what is wrong and the fix (the CLI prints it and exits 2).

Hand-written on purpose: no maintained library combines the regular-file check on the open descriptor, per-kind
caps and the loop-free, root-confined walk; each rule is a few lines that ``tests/test_untrusted.py`` and the
hostile matrix (``tests/test_hostile_matrix.py``) pin down.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import pickle
import stat
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

from .errors import JembenchError

KiB, MiB, GiB = 2**10, 2**20, 2**30


@dataclass(frozen=True)
class Kind:
    """A kind of file: how messages name it, its size cap and the usual fix."""

    label: str
    max_bytes: int
    fix: str


#: Size caps per kind: far above every real file of that kind (a WRN-28-10 training checkpoint with its replay
#: buffer and optimizer is ~0.6 GB; CIFAR-100 class covariances, 100 x 3072 x 3072 floats, 3.8 GB; the largest
#: committed record ~40 KiB), far below what would exhaust a 24 GiB machine.
KINDS: dict[str, Kind] = {
    "checkpoint": Kind("checkpoint", 4 * GiB, "pass the path of a .pt file (e.g. runs/jem/last.pt)"),
    "weights": Kind("weights file", 4 * GiB, "pass a torch.save'd state dict"),
    "buffer": Kind("replay-buffer file", 4 * GiB, "pass a torch.save'd tensor of images"),
    "stats": Kind("class statistics file", 8 * GiB, "pass the official <dataset>_mean.pt / <dataset>_cov.pt"),
    "cache": Kind("cache file", 8 * GiB, "it is recomputed"),
    "record": Kind("record", 64 * MiB, "regenerate it with `jembench eval`"),
    "partial": Kind("partial-results file", 512 * MiB, "it is recomputed"),
    "evidence": Kind("evidence file", 256 * MiB, "regenerate it with `jembench eval`"),
    "protocol": Kind("protocol file", 1 * MiB, "pass a protocol TOML file"),
    "tolerances": Kind("tolerance file", 1 * MiB, "pass a TOML file of [metrics.\"PATTERN\"] entries"),
    "published": Kind("published file", 16 * MiB, "pass a CSV in the format of results/published"),
    "figure": Kind("figure", 32 * MiB, "keep the suite's PNG figures beside the record"),
    "image": Kind("image", 64 * MiB, "replace or delete it"),
    "log": Kind("training log", 1 * GiB, "start a new run folder"),
    "lock": Kind("lock file", 1 * MiB, "it is rewritten by the next writer"),
    "dataset": Kind("dataset file", 16 * GiB, "replace it with an intact copy"),
}

#: Images with more pixels than this are refused before decoding (PIL's own default warns at 89 M and fails at
#: twice that; a 32-pixel benchmark never needs more than a few thousand per side).
MAX_IMAGE_PIXELS = 64 * 2**20

_WHAT = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
         stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFLNK: "a symbolic link"}


def _kind(kind: str) -> Kind:
    return KINDS[kind]


def _size(n: float) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{int(n)} bytes"


class UntrustedFileError(JembenchError):
    """A file refused by this module; ``what`` says why without the path ("is a FIFO (named pipe), not a
    regular file")."""

    def __init__(self, message: str, what: str):
        super().__init__(message)
        self.what = what


def _error(path: Any, kind: str, what: str, label: str | None = None, fix: str | None = None
           ) -> UntrustedFileError:
    k = _kind(kind)
    return UntrustedFileError(f"{label or k.label} {path} {what}; {fix or k.fix}", what)


def file_type(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO (named pipe)", "a folder", ...)."""
    return _WHAT.get(stat.S_IFMT(mode), "not a regular file")


def open_binary(path: str | os.PathLike, kind: str, label: str | None = None, fix: str | None = None
                ) -> BinaryIO:
    """``path`` opened for binary reading after the checks of this module (regular file, size cap); the caller
    closes it (``with open_binary(...) as fh``). Missing, unreadable, non-regular and oversized files are a
    :class:`JembenchError` naming ``label`` (default: the kind's) and the path."""
    k = _kind(kind)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(os.fspath(path), flags)
    except FileNotFoundError:
        raise _error(path, kind, "does not exist", label, fix) from None
    except PermissionError:
        raise _error(path, kind, "is not readable (permission denied)", label, "fix its permissions") from None
    except ValueError:  # an embedded NUL byte
        raise _error(repr(os.fspath(path)), kind, "is not a usable path (it contains a NUL byte)", label, fix
                     ) from None
    except OSError as exc:
        reason = "is a symbolic link loop" if exc.errno == errno.ELOOP else f"cannot be opened ({exc.strerror})"
        raise _error(path, kind, reason, label, fix) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _error(path, kind, f"is {file_type(st.st_mode)}, not a regular file", label, fix)
        if st.st_size > k.max_bytes:
            raise _error(path, kind, f"is {_size(st.st_size)}, larger than any {k.label} ({_size(k.max_bytes)} "
                                     f"at most)", label, "it is not one: pass the right file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_file(path: str | os.PathLike, kind: str, label: str | None = None, fix: str | None = None
               ) -> os.stat_result:
    """The checks of :func:`open_binary` for a file a library must open by path itself (torchvision's dataset
    files); returns its ``stat``."""
    with open_binary(path, kind, label, fix) as fh:
        return os.fstat(fh.fileno())


def _read_capped(fh: BinaryIO, path: Any, kind: str, label: str | None) -> bytes:
    """The whole file, read up to the kind's cap: its reported size in one read (never a cap-sized buffer for
    a small file), then on in 1 MiB chunks for a file that grows or reports no size (``/proc``)."""
    k = _kind(kind)
    chunks, total = [], 0
    want = min(os.fstat(fh.fileno()).st_size, k.max_bytes) + 1
    try:
        while chunk := fh.read(want):
            chunks.append(chunk)
            total += len(chunk)
            if total > k.max_bytes:
                raise _error(path, kind, f"is larger than any {k.label} ({_size(k.max_bytes)} at most)", label,
                             "it is not one: pass the right file")
            want = MiB
    except OSError as exc:
        raise _error(path, kind, f"cannot be read ({exc.strerror})", label) from None
    return b"".join(chunks)


def read_bytes(path: str | os.PathLike, kind: str, label: str | None = None) -> bytes:
    with open_binary(path, kind, label) as fh:
        return _read_capped(fh, path, kind, label)


def read_text(path: str | os.PathLike, kind: str, label: str | None = None) -> str:
    """The file as UTF-8 text; other encodings are an error naming the file."""
    data = read_bytes(path, kind, label)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(path, kind, f"is not UTF-8 text ({exc.reason} at byte {exc.start})", label) from None


def read_json(path: str | os.PathLike, kind: str, label: str | None = None) -> Any:
    """Parsed JSON; invalid, too deeply nested and non-UTF-8 files are an error naming the file."""
    import json

    data = read_bytes(path, kind, label)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # RFC 8259: JSON exchanged between systems is UTF-8
        raise _error(path, kind, f"is not valid JSON (not UTF-8: {exc.reason} at byte {exc.start})", label) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise _error(path, kind, "is nested too deeply to be a jembench file", label) from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise _error(path, kind, f"is not valid JSON ({str(exc)[:120]})", label) from None


def read_toml(path: str | os.PathLike, kind: str, label: str | None = None) -> dict[str, Any]:
    import tomllib

    text = read_text(path, kind, label)
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise _error(path, kind, f"is not valid TOML ({str(exc)[:160]})", label, "fix the file") from None


def read_csv(path: str | os.PathLike, kind: str, label: str | None = None, **kwargs):
    """``pandas.read_csv`` of the file (kwargs passed on); unparsable files are an error naming it."""
    import pandas as pd

    data = read_bytes(path, kind, label)
    try:
        return pd.read_csv(io.BytesIO(data), **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, ValueError) as exc:
        raise _error(path, kind, f"is not a readable CSV ({str(exc)[:160]})", label, "fix the file") from None


def load_npz(path: str | os.PathLike, kind: str = "evidence", label: str | None = None) -> dict[str, Any]:
    """The arrays of a ``numpy.savez`` file, read with ``allow_pickle=False`` (object arrays are refused)."""
    import numpy as np

    data = read_bytes(path, kind, label)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise _error(path, kind, f"is not a readable .npz file ({str(exc)[:120]})", label) from None


def sha256(path: str | os.PathLike, kind: str, label: str | None = None) -> str:
    """SHA-256 of the file's bytes (read in 1 MiB chunks, within the kind's cap)."""
    digest = hashlib.sha256()
    with open_binary(path, kind, label) as fh:
        for chunk in iter(lambda: fh.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -------------------------------------------------------------------------------------------------- torch
def load_torch(path: str | os.PathLike, kind: str = "checkpoint", label: str | None = None,
               trust: bool = False) -> Any:
    """The object in a ``torch.save`` file, loaded with ``weights_only=True`` unless ``trust`` (the user's
    ``--trust-checkpoint``); a truncated, garbage or code-carrying file is one line naming it."""
    return load_torch_and_digest(path, kind, label, trust, digest=False)[0]


def load_torch_and_digest(path: str | os.PathLike, kind: str = "checkpoint", label: str | None = None,
                          trust: bool = False, digest: bool = True) -> tuple[Any, str | None]:
    """:func:`load_torch` and the SHA-256 of the bytes it loaded (read through the same descriptor, so the
    digest is that of the file that was loaded even if the path is replaced meanwhile)."""
    import torch

    if trust:
        warnings.warn(f"--trust-checkpoint: loading {path} with full unpickling; code inside the file can run",
                      stacklevel=3)
    name = label or _kind(kind).label
    with open_binary(path, kind, label) as fh:
        sha = None
        if digest:
            hasher = hashlib.sha256()
            for chunk in iter(lambda: fh.read(MiB), b""):
                hasher.update(chunk)
            sha = hasher.hexdigest()
            fh.seek(0)
        try:
            with warnings.catch_warnings():  # garbage bytes can claim any pickle protocol; the error says enough
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                return torch.load(fh, map_location="cpu", weights_only=not trust), sha  # noqa: S614 (if trusted)
        except pickle.UnpicklingError as exc:
            text = str(exc)
            if "GLOBAL" not in text and "global" not in text:  # garbage bytes, not a pickle that wants code
                raise JembenchError(f"{name} {path} is truncated or not a PyTorch file (unreadable pickle); "
                                    f"re-download or re-save it") from None
            what = next((line.strip() for line in text.splitlines() if "GLOBAL" in line or "global" in line), "")
            raise JembenchError(f"refusing to load {name} {path}: it needs arbitrary unpickling, which could run "
                                f"code ({what[:160]}); re-save it as plain tensors, or pass --trust-checkpoint if "
                                f"you trust its author") from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, MemoryError,
                # torch's weights-only unpickler is a parser over hostile bytes: random input also ends in these
                # (about 1 file in 12 of random bytes, measured), never in a valid checkpoint
                IndexError, KeyError, TypeError, AttributeError, struct.error, OverflowError) as exc:
            detail = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise JembenchError(f"{name} {path} is truncated or not a PyTorch file ({type(exc).__name__}: "
                                f"{detail}); re-download or re-save it") from None


def load_cache(path: str | os.PathLike, use: Callable[[Any], Any], what: str) -> Any:
    """A cache entry written by jembench (``torch.save``, atomically): ``use(obj)`` of the loaded object, or
    None when there is no entry, when ``use`` returns None (an entry of other settings), or when the entry is
    damaged — truncated, not a regular file, or malformed so that ``use`` fails — in which case a note says it is
    recomputed (the caller recomputes and overwrites it). A damaged cache never fails a run."""
    if not os.path.lexists(path):
        return None
    try:
        return use(load_torch(path, "cache"))
    except (JembenchError, KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
        from . import progress

        progress.warning(f"note: {what} cache {path} is unusable ({str(exc)[:160]}); recomputing it")
        return None


# -------------------------------------------------------------------------------------------------- walks
@dataclass
class Listing:
    """The files a walk found (sorted) and what it skipped, in words (notes for the user)."""

    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    folders_named_like_files: list[Path] = field(default_factory=list)  # e.g. a folder called r.json

    def note(self) -> str | None:
        """One line summarising what was skipped (None when nothing was)."""
        if not self.skipped:
            return None
        more = f" (+{len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
        return f"skipped {len(self.skipped)} entries: {'; '.join(self.skipped[:3])}{more}"


def walk(root: str | os.PathLike, suffixes: tuple[str, ...] | None = None, recursive: bool = True,
         label: str = "folder") -> Listing:
    """Regular files under ``root`` whose names end in one of ``suffixes`` (case-insensitive; None = any),
    sorted by path. Symlinked folders are not followed; a symlinked file is kept only when its target is a
    regular file inside ``root`` and no other entry of the walk is that same file; FIFOs, devices and sockets
    named like wanted files are skipped. Every skip is listed in :attr:`Listing.skipped`. ``root`` itself must be
    a folder (a symlink to one is followed: it is what the user named)."""
    root = Path(root)
    try:
        real_root = root.resolve(strict=True)
        if not real_root.is_dir():
            raise NotADirectoryError
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop on Python < 3.13
        raise JembenchError(f"{label} {root} does not exist or is not a folder; pass an existing folder") from None
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None
    listing = Listing()
    real: list[tuple[Path, tuple[int, int]]] = []
    links: list[tuple[Path, tuple[int, int]]] = []
    seen_dirs: set[tuple[int, int]] = set()
    stack = [real_root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder, follow_symlinks=False)
            if (st.st_dev, st.st_ino) in seen_dirs:
                listing.skipped.append(f"{folder} (a folder seen before: mount loop)")
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise JembenchError(f"{label} {folder} is unreadable ({exc.strerror}); fix its permissions") from None
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    if wanted is None or entry.name.lower().endswith(wanted):
                        _symlinked_file(path, real_root, links, listing)
                    elif os.path.isdir(path):
                        listing.skipped.append(f"{path} (a symlinked folder: not followed)")
                elif entry.is_dir(follow_symlinks=False):
                    if wanted is not None and entry.name.lower().endswith(wanted):
                        listing.folders_named_like_files.append(path)
                    if recursive:
                        stack.append(path)
                elif wanted is None or entry.name.lower().endswith(wanted):
                    est = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(est.st_mode):
                        real.append((path, (est.st_dev, est.st_ino)))
                    else:
                        listing.skipped.append(f"{path} ({file_type(est.st_mode)})")
            except OSError as exc:
                listing.skipped.append(f"{path} (unreadable: {exc.strerror})")
    claimed = {ident for _, ident in real}
    files = [p for p, _ in real]
    for path, ident in links:
        if ident in claimed:
            listing.skipped.append(f"{path} (a symlink to a file already in the folder: not counted twice)")
        else:
            claimed.add(ident)
            files.append(path)
    listing.files = sorted(files)
    return listing


def _symlinked_file(path: Path, real_root: Path, links: list, listing: Listing) -> None:
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        listing.skipped.append(f"{path} (a broken or looping symbolic link)")
        return
    if not target.is_relative_to(real_root):
        listing.skipped.append(f"{path} (a symbolic link to {target}, outside {real_root})")
        return
    st = os.stat(target)
    if stat.S_ISDIR(st.st_mode):
        listing.skipped.append(f"{path} (a symlinked folder: not followed)")
    elif not stat.S_ISREG(st.st_mode):
        listing.skipped.append(f"{path} (a symbolic link to {file_type(st.st_mode)})")
    else:
        links.append((path, (st.st_dev, st.st_ino)))


def lies_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path``, with ``..`` and every symbolic link resolved, lies inside the resolved ``root`` (a link
    loop lies nowhere)."""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop (Python < 3.13)
        return False


def subfolders(folder: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """The names of ``folder``'s real subfolders (sorted) and of its symlinked ones (not followed)."""
    real, linked = [], []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                real.append(entry.name)
            elif entry.is_symlink() and os.path.isdir(entry.path):
                linked.append(entry.name)
    return sorted(real), sorted(linked)


# ------------------------------------------------------------------------------------------------- images
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def open_image(path: str | os.PathLike):
    """An image file as an 8-bit RGB PIL image: regular file within the image cap, at most
    :data:`MAX_IMAGE_PIXELS` pixels (checked from the header, before decoding), truncated or unknown files
    refused. 16-bit greyscale (PNG ``I;16``, or ``I`` from a PNG) is scaled to 8 bits by 255/65535 with
    rounding; 32-bit integer or float images have no agreed 8-bit meaning and are refused."""
    from PIL import Image

    data = read_bytes(path, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{width}x{height} pixels")
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise JembenchError(f"image {path} has too many pixels ({str(exc)[:80]}; at most {MAX_IMAGE_PIXELS:,}): "
                            f"a decompression bomb or not a benchmark image; delete it or shrink it") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, MemoryError) as exc:
        raise JembenchError(f"image {path} is unreadable ({type(exc).__name__}: {str(exc)[:100]}); replace "
                            f"or delete it") from None
    return _to_rgb8(img, path)


def _to_rgb8(img, path):
    from PIL import Image

    if img.mode in _SIXTEEN_BIT or (img.mode == "I" and img.format == "PNG"):
        import numpy as np

        levels = np.asarray(img, dtype=np.float64)
        if levels.min() < 0 or levels.max() > 65535:
            raise JembenchError(f"image {path} holds values outside 16-bit range; save it as an 8- or 16-bit PNG")
        return Image.fromarray(np.floor(levels * (255 / 65535) + 0.5).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("I", "F") or img.mode.startswith(("I;", "F;")):
        raise JembenchError(f"image {path} is a {'32-bit integer' if img.mode.startswith('I') else 'floating-point'} "
                            f"image (PIL mode {img.mode}), which has no agreed 8-bit meaning; save it as an 8- or "
                            f"16-bit PNG or a JPEG")
    return img if img.mode == "RGB" else img.convert("RGB")


def report_skips(listing: Listing, where: str) -> None:
    """Log the walk's skip note (if any) as a warning naming ``where``."""
    text = listing.note()
    if text:
        from . import progress

        progress.warning(f"note: {where}: {text}")
