"""``python -m jembench`` (and ``torchrun -m jembench``) runs the CLI."""

import sys

from .cli import main

sys.exit(main())
