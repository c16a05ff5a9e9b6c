"""Defaults shared by the CLI and the library, in a module light enough to import at CLI start-up."""

import os

DEFAULT_DATASET = "digits"
DEFAULT_DATA_ROOT = os.environ.get("JEMBENCH_DATA", "data")
