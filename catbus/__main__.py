"""``python -m catbus`` is the ``catbus`` command. The launcher starts nodes with ``python -P -m
catbus node ...``: ``-P`` keeps the current folder off ``sys.path``, where a folder named
``catbus`` would otherwise hide the installed package."""

import sys

from catbus.cli.main import main

sys.exit(main())
