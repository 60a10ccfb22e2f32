"""``catbus reproduce`` and ``catbus verify RUN.mcap``: a recorded ``parallel`` run stepped again
in one process, from its step log (docs/reproduce.md).

* :mod:`.plan` -- the step log read, and the order to step it in (pure);
* :mod:`.source` -- a recording read for a reproduction;
* :mod:`.streams` -- the messages computed again, and which of them a step is given;
* :mod:`.compare` -- the messages computed again compared with the recorded ones;
* :mod:`.rerun` -- the nodes built again and stepped, the messages compared or recorded;
* :mod:`.api` -- :func:`~catbus.reproduce.api.reproduce` and its report, what the command line
  and ``catbus verify RUN.mcap`` call.

This package's ``__init__`` imports nothing: the launch-file checks read a recorded latency's
step durations through :mod:`.source` (:func:`~catbus.reproduce.source.recorded_durations`),
and must not pull in :mod:`.rerun`, which builds launch specs.
"""
