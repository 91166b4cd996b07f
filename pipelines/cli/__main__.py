"""``python -m pipelines.cli`` = the ``backscore`` command."""

import sys

from pipelines.cli.main import main

sys.exit(main())
