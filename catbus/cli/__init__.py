"""The ``catbus`` command: a thin layer over the Python API.

:mod:`catbus.cli.main` assembles the subcommands; each command module holds its parser
(``add_parser``) and its handler; :mod:`catbus.cli.common` holds what they share. Talking to a
live run is :mod:`catbus.client`'s job: the commands print what it returns.
"""
