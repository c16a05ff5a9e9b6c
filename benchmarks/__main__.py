"""``python -m benchmarks [--quick] [--only FAMILY ...] [--compile] [--threads N] [--device D]``
``[--official-jem PATH] [--official-jempp PATH] [--official-sadajem PATH]`` (family ``official``)."""

import argparse
import sys

from benchmarks.runner import add_extra_arguments
from jembench.commands import bench
from jembench.errors import JembenchError

from . import runner

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=bench.DESCRIPTION,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
bench.add_arguments(parser)
add_extra_arguments(parser)
try:
    args = parser.parse_args()
    bench.check_arguments(args)
    sys.exit(runner.run_benchmarks(args))
except JembenchError as exc:
    print(f"benchmarks: error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
