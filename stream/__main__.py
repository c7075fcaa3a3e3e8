"""``python -m stream`` runs the ``knnstream`` command line."""

import sys

from stream.cli.main import main

sys.exit(main())
