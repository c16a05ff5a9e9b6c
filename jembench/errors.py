"""User-facing errors: one line that names the input and the fix; the CLI turns them into exit code 2."""


class JembenchError(Exception):
    """A problem with the user's input or environment (not a bug). Message: what is wrong + how to fix it."""

    exit_code = 2
