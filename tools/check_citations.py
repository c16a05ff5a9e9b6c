"""Check the file:line citations of the official code in docs/parity.md and suites/*-official*.toml against local
mirrors of the official repositories (wgrathwohl/JEM, sndnyang/JEMPP, sndnyang/SADAJEM).

    python tools/check_citations.py [--mirrors DIR] [--show] [FILE ...]

The mirrors are bare git directories ``DIR/<owner>+<name>/repo`` (what the ``fetch`` tool writes; default
``$JEMBENCH_OFFICIAL_MIRRORS`` or ``/work/.mirror``). A citation is ``path:LINES`` (``eval_jempp.py:615``,
``Task/eval_buffer.py:86-88``), optionally pinned to a commit (``fc345cd:scripts/all_ood.sh:3-23``), or a bare
``:LINES`` that continues the last path cited; the repository is the last one named before it (``JEM``,
``JEMPP``, ``SADAJEM`` or ``owner/name``), else the file's default (a TOML names its repository in its header).
An unpinned citation is read at the repository's pinned head below.

Mechanical checks (exit 1 when any fails): the repository is known, the file exists at that commit — a file that
exists only in the repository's history must be cited with the commit that has it — and the lines exist. What a
line *says* cannot be checked mechanically: ``--show`` prints every cited line for a reviewer (the values the
parity tests depend on are checked line by line in tests/test_official_settings.py). Citations whose file cannot
be resolved (a bare ``:LINES`` with no path before it) are listed as unresolved, not failed.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the commit each unpinned citation is read at (the repositories' heads when jembench's protocols were written)
HEADS = {"wgrathwohl/JEM": "3d01161", "sndnyang/JEMPP": "fba6ba5", "sndnyang/SADAJEM": "9d8f3c7"}
ALIASES = {"JEM": "wgrathwohl/JEM", "JEMPP": "sndnyang/JEMPP", "SADAJEM": "sndnyang/SADAJEM",
           "wgrathwohl/JEM": "wgrathwohl/JEM", "sndnyang/JEMPP": "sndnyang/JEMPP",
           "sndnyang/SADAJEM": "sndnyang/SADAJEM"}
REPO_TOKEN = re.compile(r"(?<![\w/.-])(wgrathwohl/JEM|sndnyang/JEMPP|sndnyang/SADAJEM|SADAJEM|JEMPP|JEM)(?![\w/+-])")
LINES = r"\d+(?:-\d+)?"
CITATION = re.compile(rf"(?:(?<![\w.])(?P<commit>[0-9a-f]{{7,40}}):)?(?<![\w/.-])(?P<path>[A-Za-z_][\w/.-]*\."
                      rf"(?:py|sh|md|json))(?::(?P<lines>{LINES}(?:,\s*{LINES}(?![\w:]))*))?"
                      rf"|(?<![\w.)`])(?<!\w ):(?P<bare>{LINES})(?![\w.])")
#: files a citation may name that are not in the official repositories (jembench's own, foolbox's)
OTHER_FILES = re.compile(r"^(tests/|jembench/|reference_models/|benchmarks/|suites/|docs/|results/|tools/|foolbox/|"
                         r"attacks/iterative_projected_gradient|attacks/base|adversarial\.py|distances\.py|"
                         r"iterative_projected_gradient\.py|README\.md$)")


@dataclass
class Citation:
    source: str  # where the citation was read: file:line
    repo: str | None
    commit: str | None
    path: str | None
    first: int
    last: int


def default_repo(path: Path, text: str) -> str | None:
    """A TOML's repository: the first one its header names."""
    if path.suffix != ".toml":
        return None
    m = REPO_TOKEN.search("\n".join(text.splitlines()[:6]))
    return ALIASES[m.group(1)] if m else None


def units(path: Path, text: str) -> list[tuple[int, str]]:
    """The text in units that reset the file context: a Markdown table row or paragraph; a TOML's leading comment
    block, then each line."""
    lines = text.splitlines()
    if path.suffix == ".toml":  # the header; then each key with its comment continuation lines ("    # ...")
        head = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
        out = [(1, "\n".join(lines[:head]))]
        for i, line in enumerate(lines[head:], head + 1):
            if line[:1].isspace() and line.lstrip().startswith("#") and len(out) > 1:
                out[-1] = (out[-1][0], out[-1][1] + "\n" + line)
            else:
                out.append((i, line))
        return out
    out, start, buf = [], 1, []
    for i, line in enumerate(lines, 1):
        if buf and (not line.strip() or line.startswith("|")):
            out.append((start, "\n".join(buf)))
            buf = []
        if not line.strip():
            continue
        if not buf:
            start = i
        buf.append(line)
    if buf:
        out.append((start, "\n".join(buf)))
    return out


def citations(path: Path) -> list[Citation]:
    """Every citation of ``path``. A bare ``:LINES`` continues the last path cited in its unit for the current
    repository; in a TOML without one, the protocol's main file (the first .py file its header cites with
    lines)."""
    text = path.read_text(encoding="utf-8")
    base_repo = default_repo(path, text)
    all_units = units(path, text)
    primary: tuple[str | None, str | None] = (None, None)
    if path.suffix == ".toml":  # the protocol's main file: the first .py file its header cites with lines
        m = next((m for m in CITATION.finditer(all_units[0][1])
                  if m.group("path") and m.group("path").endswith(".py") and m.group("lines")), None)
        primary = (m.group("commit"), m.group("path")) if m else (None, None)
    found: list[Citation] = []
    for start, unit in all_units:
        repo = base_repo
        last_path: dict[str | None, tuple[str | None, str | None]] = {}
        events = sorted([(m.start(), "repo", m) for m in REPO_TOKEN.finditer(unit)]
                        + [(m.start(), "cite", m) for m in CITATION.finditer(unit)], key=lambda e: e[0])
        for pos, kind, m in events:
            where = f"{path.relative_to(ROOT)}:{start + unit.count(chr(10), 0, pos)}"
            if kind == "repo":
                repo = ALIASES[m.group(1)]
                continue
            if m.group("bare"):
                fallback = primary if path.suffix == ".toml" and repo == base_repo else (None, None)
                commit, cited = last_path.get(repo, fallback)
                spans = [m.group("bare")]
            else:
                cited, commit = m.group("path"), m.group("commit")
                if OTHER_FILES.match(cited) and not (cited == "README.md" and repo):
                    continue
                last_path[repo] = (commit, cited)
                if not m.group("lines"):
                    continue
                spans = re.split(r",\s*", m.group("lines"))
            for span in spans:
                a, _, b = span.partition("-")
                found.append(Citation(where, repo, commit, cited, int(a), int(b or a)))
    return found


def _git_dir(mirrors: Path, repo: str) -> Path:
    return mirrors / repo.replace("/", "+") / "repo"


@functools.lru_cache(maxsize=None)
def file_lines(git_dir: Path, commit: str, path: str) -> list[str] | None:
    res = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], capture_output=True,
                         text=True)
    return res.stdout.splitlines() if res.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def history_commits(git_dir: Path, path: str) -> list[str]:
    res = subprocess.run(["git", "--git-dir", str(git_dir), "log", "--all", "--format=%h", "--", path],
                         capture_output=True, text=True)
    return res.stdout.split()


def check(c: Citation, mirrors: Path) -> tuple[str, str]:
    """("ok" | "error" | "unresolved", message)."""
    if c.path is None or c.repo is None:
        return "unresolved", f"{c.source}: :{c.first}-{c.last} names no file (or repository) before it"
    git_dir = _git_dir(mirrors, c.repo)
    commit = c.commit or HEADS[c.repo]
    lines = file_lines(git_dir, commit, c.path)
    label = f"{c.repo}@{commit}:{c.path}:{c.first}" + (f"-{c.last}" if c.last != c.first else "")
    if lines is None:
        history = history_commits(git_dir, c.path)
        if history:
            return "error", (f"{c.source}: {label}: not in the file tree at {commit}; it exists only in the history "
                             f"(commits {', '.join(history[:4])}): cite it as <commit>:{c.path}:LINES")
        return "error", f"{c.source}: {label}: no such file in {c.repo}"
    if not 1 <= c.first <= c.last <= len(lines):
        return "error", f"{c.source}: {label}: the file has {len(lines)} lines"
    shown = "\n".join(f"      {n:>4} | {lines[n - 1]}" for n in range(c.first, min(c.last, c.first + 5) + 1))
    return "ok", f"{c.source}: {label}\n{shown}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--mirrors", type=Path, default=Path(os.environ.get("JEMBENCH_OFFICIAL_MIRRORS",
                                                                             "/work/.mirror")))
    parser.add_argument("--show", action="store_true", help="print every cited line (for a reviewer)")
    args = parser.parse_args(argv)
    missing = [r for r in HEADS if not _git_dir(args.mirrors, r).is_dir()]
    if missing:
        print(f"check_citations: no mirror of {', '.join(missing)} under {args.mirrors}; fetch them (bare git "
              f"directories <owner>+<name>/repo) or pass --mirrors DIR", file=sys.stderr)
        return 2
    files = args.files or [ROOT / "docs" / "parity.md", *sorted((ROOT / "suites").glob("*-official*.toml"))]
    counts = {"ok": 0, "error": 0, "unresolved": 0}
    for f in files:
        for c in citations(f.resolve()):
            status, message = check(c, args.mirrors)
            counts[status] += 1
            if status != "ok" or args.show:
                print(("" if status == "ok" else status.upper() + " ") + message)
    print(f"{counts['ok']} citations resolved and in range, {counts['error']} errors, {counts['unresolved']} "
          f"unresolved", file=sys.stderr)
    return 1 if counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
