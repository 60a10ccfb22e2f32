"""``python -m catbus`` is the ``catbus`` command (the launcher starts nodes this way)."""

import sys

from catbus.cli.main import main

sys.exit(main())
