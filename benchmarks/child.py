"""``python -m benchmarks.child RSS_FILE ARGS...``: the ``jembench`` command line, reporting its own peak RSS.

A child's ``ru_maxrss`` as its parent sees it (``os.wait4``) starts at the parent's RSS at fork time on Linux
(exec carries the old address space's high-water mark over), so after a big parent process every child would
report the parent's peak. The high-water mark of the exec'd address space itself is ``VmHWM`` in
``/proc/self/status``: this launcher runs :func:`jembench.cli.main` and writes it (MiB) to ``RSS_FILE`` on exit.
"""

import resource
import sys
from pathlib import Path


def peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: bytes (macOS) or KiB
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def main() -> int:
    rss_file, argv = Path(sys.argv[1]), sys.argv[2:]
    from jembench.cli import main as cli_main

    try:
        return cli_main(argv)
    finally:
        rss_file.write_text(f"{peak_rss_mib():.1f}\n")


if __name__ == "__main__":
    sys.exit(main())
