"""Start-up of the commands that need no network: wall time of a fresh process, and whether torch was imported.

``jembench --help``, ``leaderboard``, ``check`` and ``report`` read CSV / JSON records and write text or HTML;
they should start in well under a second and never import torch (target: < 1 s wall, ``torch`` not in
``sys.modules``). So should a bad argument to ``eval`` or ``train`` — a misspelt suite, a missing checkpoint, an
out-of-range value (issue 27 item 7): it is reported (exit 2) before torch is imported. Each is run as
``python -c "...jembench.cli.main(argv)..."`` in a fresh interpreter — the same code path as the ``jembench``
console script — with the repository's own records
(``results/runs/demo``) as input; the child reports ``'torch' in sys.modules`` after ``main`` returns. Wall
time is from ``Popen`` to exit (interpreter start-up included, as a user sees it), median over interleaved
repeats. When torch does get imported, one more run with ``python -X importtime`` names the import chain
that pulled it in (the module that imported torch, and what imported that).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, Row, log, median

TARGET_MS = 1000.0
DEMO_RECORDS = REPO / "results" / "runs" / "demo"
CHILD = ("import sys\n"
         "from jembench.cli import main\n"
         "try:\n"
         "    rc = main(sys.argv[1:])\n"
         "except SystemExit as exc:\n"
         "    rc = exc.code\n"
         "sys.stdout.flush()\n"
         "sys.stderr.write('\\nJEMBENCH_STARTUP torch=%d rc=%s\\n' % ('torch' in sys.modules, rc))\n")
MARK = re.compile(r"JEMBENCH_STARTUP torch=(\d) rc=(\S+)")


def commands(tmp: Path) -> dict[str, list[str]]:
    records = str(DEMO_RECORDS)
    return {"--help": ["--help"],
            "leaderboard": ["leaderboard", records],
            "check": ["check", records, "--baseline", records],
            "report": ["report", records, "-o", str(tmp / "report.html")],
            "eval --suite (misspelt)": ["eval", str(tmp / "absent.pt"), "--suite", "acuracy"],
            "eval (missing checkpoint)": ["eval", str(tmp / "absent.pt")],
            "train --lr -1": ["train", "jem", "--lr", "-1"]}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_once(argv: list[str], cwd: Path, importtime: bool = False) -> tuple[float, bool, str, str]:
    """(wall seconds, torch imported, exit status, stderr) of one fresh ``jembench`` process."""
    flags = ["-X", "importtime"] if importtime else []
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *flags, "-c", CHILD, *argv], cwd=cwd, env=_env(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    found = MARK.search(proc.stderr)
    if found is None:
        raise RuntimeError(f"jembench {' '.join(argv)} died (exit {proc.returncode}): {proc.stderr[-400:]}")
    return wall, found.group(1) == "1", found.group(2), proc.stderr


def torch_import_chain(importtime_stderr: str) -> list[str]:
    """From ``-X importtime`` output: ``["torch", <its importer>, <that one's importer>, ...]``.

    Lines are printed when a module finishes importing (children before parents); nesting shows as the
    indentation of the name. The importer of a module is the next line below it that is less indented."""
    rows = []
    for line in importtime_stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        name_part = line.rsplit("|", 1)[1]
        name = name_part.strip()
        if name == "package":  # the header line
            continue
        rows.append((len(name_part) - len(name_part.lstrip()), name))
    for i, (depth, name) in enumerate(rows):
        if name == "torch":
            chain = [name]
            for d, n in rows[i + 1:]:
                if d < depth:
                    chain.append(n)
                    depth = d
            return chain
    return []


def run(quick: bool) -> list[Row]:
    repeats = 3 if quick else 5
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="jembench-bench-startup-") as tmp:
        cmds = commands(Path(tmp))
        walls: dict[str, list[float]] = {name: [] for name in cmds}
        torch_seen: dict[str, bool] = {name: False for name in cmds}
        status: dict[str, str] = {}
        log(f"startup: {', '.join(cmds)} ({repeats} fresh processes each, interleaved)")
        run_once(cmds["--help"], Path(tmp))  # warm the page cache once
        for r in range(repeats):
            for name, argv in cmds.items() if r % 2 == 0 else reversed(list(cmds.items())):
                wall, torch_loaded, rc, _ = run_once(argv, Path(tmp))
                walls[name].append(wall)
                torch_seen[name] |= torch_loaded
                status[name] = rc
        for name, argv in cmds.items():
            ms = median(walls[name]) * 1e3
            chain = torch_import_chain(run_once(argv, Path(tmp), importtime=True)[3]) if torch_seen[name] else []
            holds = ms < TARGET_MS and not torch_seen[name]
            detail = (f"torch imported: {'yes' if torch_seen[name] else 'no'}"
                      + (f" (via {' <- '.join(chain[1:4])})" if chain[1:] else "")
                      + f"; runs {min(walls[name]) * 1e3:.0f}–{max(walls[name]) * 1e3:.0f} ms; exit {status[name]}; "
                        f"n={repeats}")
            rows.append(Row("startup", "-", f"jembench {name}: wall time of a fresh process", ms, "ms",
                            f"< {TARGET_MS:.0f} ms, no torch", holds, detail,
                            {"argv": argv, "wall_s": walls[name], "torch_imported": torch_seen[name],
                             "torch_import_chain": chain, "exit": status[name]}))
    return rows
