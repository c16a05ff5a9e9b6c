"""``python -m benchmarks [--quick] [--only FAMILY ...] [--compile] [--threads N] [--device D]``."""

import argparse
import sys

from jembench.commands import bench
from jembench.errors import JembenchError

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=bench.DESCRIPTION,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
bench.add_arguments(parser)
try:
    sys.exit(bench.run(parser.parse_args()))
except JembenchError as exc:
    print(f"benchmarks: error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
