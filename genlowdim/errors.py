"""Errors the command line reports as one line, and its exit codes.

Every module that rejects user input raises :class:`UsageError` from here, so ``genlowdim ...``,
``python -m genlowdim ...`` and ``python -m genlowdim.cli ...`` all catch the same class.
"""
from __future__ import annotations

EXIT_OK = 0           # the command did what was asked
EXIT_PROBLEMS = 1     # a check ran and found problems (``genlowdim data check``)
EXIT_USAGE = 2        # bad arguments, config, input file or checkpoint (argparse uses 2 as well)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, the shell's convention)


class UsageError(ValueError):
    """Bad command-line input; printed as one line without a traceback, exit code 2."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, of another family, or of an incompatible format (exit 2)."""


def require_positive(args, *names: str) -> None:
    """UsageError unless each named integer option (``batch_size`` for ``--batch-size``) of the parsed
    ``args`` is absent or >= 1."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} {value}: must be at least 1")
