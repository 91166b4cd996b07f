"""The ``backscore`` command line: one module per command group (see :mod:`pipelines.cli.main`)."""

from pipelines.cli.main import main

__all__ = ["main"]
