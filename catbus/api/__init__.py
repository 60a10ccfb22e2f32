"""The user's API: ``catbus.run``, ``catbus.start`` and its ``RunHandle``, ``RunResult``."""
