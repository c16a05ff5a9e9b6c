"""The documented CI jobs (docs/check.md), as lines to run: what the seed baseline (:mod:`benchmarks.seed_baseline`)
and the CI matrix (:mod:`benchmarks.ci_matrix`) run, and what ``tests/test_check_ci_example.py`` checks; and the
fixed-checkpoint job (:class:`FixedJob`, the YAML block whose check line has ``--paired``), whose committed baseline
:mod:`benchmarks.fixed_baseline` makes and ``tests/test_check_fixed_example.py`` runs.

The YAML block of docs/check.md that runs ``jembench check --baseline`` is the one source of the job: its ``run:``
lines are read here, and each run of the job is those lines with its own folders (``runs/ci`` → a run's folder), a seed
and, for the degraded models, extra training options. So the committed baseline is made, and the matrix measured, by the
very commands a user copies.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JOB_FOLDER = "runs/ci"  # where the documented job writes: the checkpoint in runs/ci, the records in runs/ci/eval


def ci_job_lines(page: Path = REPO / "docs" / "check.md", *, paired: bool = False) -> list[str]:
    """The ``run:`` commands of docs/check.md's YAML block that runs ``jembench check --baseline``, comments dropped:
    the retrained-model job (default), or with ``paired`` the fixed-checkpoint job (its check line has ``--paired``)."""
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    block = next(b for b in blocks if "jembench check" in b and "--baseline" in b and ("--paired" in b) == paired)
    return [m.group(1).strip() for m in re.finditer(r"^\s*-?\s*run:\s*(.+)$", block, flags=re.M)]


def the_line(lines: list[str], start: str) -> str:
    """The line of ``lines`` that starts with ``start`` (e.g. ``jembench check``)."""
    return next(line for line in lines if line.startswith(start))


def words(line: str) -> list[str]:
    """A documented line as argv: shell words, the trailing ``# comment`` dropped."""
    return shlex.split(line, comments=True)


def relocate(argv: list[str], run: Path, records: Path) -> list[str]:
    """``argv`` with the job's folders replaced: ``runs/ci/eval`` → ``records``, ``runs/ci…`` → ``run…`` — relative
    to the checkout when inside it (the commands run there), so committed records name no machine's folders."""
    out = []
    for word in argv:
        if word == f"{JOB_FOLDER}/eval":
            out.append(_local(records))
        elif word == JOB_FOLDER or word.startswith(JOB_FOLDER + "/"):
            out.append(_local(run) + word[len(JOB_FOLDER):])
        else:
            out.append(word)
    return out


def _local(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


@dataclass(frozen=True)
class Job:
    """The documented job's train, eval and check commands (argv, ``jembench`` first)."""

    train: list[str]
    eval: list[str]
    check: list[str]

    @classmethod
    def from_docs(cls, page: Path = REPO / "docs" / "check.md") -> Job:
        lines = ci_job_lines(page)
        return cls(*(words(the_line(lines, f"jembench {name}")) for name in ("train", "eval", "check")))

    def baseline(self) -> str:
        """The ``--baseline`` folder the check line names."""
        return self.check[self.check.index("--baseline") + 1]

    def eval_preset(self) -> str:
        return self.eval[self.eval.index("--preset") + 1]


@dataclass(frozen=True)
class FixedJob:
    """The documented fixed-checkpoint job's eval and check commands (argv, ``jembench`` first): a committed
    checkpoint re-evaluated and checked against its committed records with ``--paired``."""

    eval: list[str]
    check: list[str]

    @classmethod
    def from_docs(cls, page: Path = REPO / "docs" / "check.md") -> FixedJob:
        lines = ci_job_lines(page, paired=True)
        return cls(*(words(the_line(lines, f"jembench {name}")) for name in ("eval", "check")))

    def baseline(self) -> str:
        """The ``--baseline`` folder the check line names (the committed records)."""
        return self.check[self.check.index("--baseline") + 1]

    def checkpoint(self) -> str:
        """The checkpoint the eval line evaluates (committed beside the baseline records)."""
        return self.eval[2]

    def eval_preset(self) -> str:
        return self.eval[self.eval.index("--preset") + 1]

    def suites(self) -> list[str]:
        return [self.eval[i + 1] for i, word in enumerate(self.eval) if word == "--suite"]

    def eval_into(self, folder: str) -> list[str]:
        """The eval line writing its records to ``folder`` instead of the job's output folder."""
        argv = list(self.eval)
        argv[argv.index("--out") + 1] = folder
        return argv


def jembench(argv: list[str], threads: int, log: Path, nice: int = 10) -> tuple[int, float]:
    """Run one ``jembench …`` argv (``argv[0] == "jembench"``) with this interpreter, ``OMP_NUM_THREADS=threads``,
    under ``nice``; output to ``log``. Returns (exit code, wall seconds). Idle OpenMP threads sleep
    (``OMP_WAIT_POLICY=PASSIVE`` unless set): on a machine shared with other jobs, 2 threads that spin at every
    barrier took 14 minutes for half of a 2-minute training here; the policy changes no number."""
    assert argv[0] == "jembench", argv
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.run(["nice", "-n", str(nice), sys.executable, "-m", "jembench", *argv[1:]], cwd=REPO,
                              env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - start


def drop_figures(folder: Path) -> None:
    """Remove the PNG / PDF figures ``eval`` drew beside the records (a baseline keeps records and evidence)."""
    for path in folder.iterdir():
        if path.suffix in (".png", ".pdf"):
            path.unlink()
