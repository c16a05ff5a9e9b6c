"""``python -m benchmarks [--quick] [--only FAMILY ...] [--compile] [--threads N] [--device D]``."""

import argparse
import sys

from jembench.commands import bench
from jembench.errors import JembenchError

from . import runner

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=bench.DESCRIPTION,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
bench.add_arguments(parser)
try:
    args = parser.parse_args()
    bench.check_arguments(args)
    sys.exit(runner.run_benchmarks(args))
except JembenchError as exc:
    print(f"benchmarks: error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
