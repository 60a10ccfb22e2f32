"""The ``catbus`` command: a thin layer over the Python API."""
