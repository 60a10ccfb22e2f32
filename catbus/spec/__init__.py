"""Launch files: reading and checking them, class paths, the run's description (``catbus.load``)."""
