"""A conformance kit for nodes written in other languages (``catbus conformance -- COMMAND``).

It starts small real runs around the node under test -- catbus nodes as its neighbours (a
feeder of its inputs, a reader of its outputs, the recorder), its own command started with the
bus address and its name -- and judges, check by check, what it does right and wrong against
``docs/protocol.md``: joining, the hello barrier, answering hellos, progress and ``through``,
the final progress, ``catbus/stats``, ending on the run's end, ``end`` and ``stop``, equal
stepped recordings with random delays, a parallel run. An implementer needs no catbus source:
each verdict is one line and the section of the protocol document to read
(``docs/conformance.md``).

* :mod:`.checks` -- the checks, verdicts and the report;
* :mod:`.probe` -- the registry of the kit's own that reads and refuses the ``register``;
* :mod:`.runs` -- the launch files and the kit's part in each run; :mod:`.nodes` -- the kit's
  catbus nodes; :mod:`.observer` -- watching the node's data plane from outside the run;
  :mod:`.foreign` -- the node's process;
* :mod:`.judge` -- what was seen, as verdicts; :mod:`.kit` -- all of it in order.
"""

from catbus.conformance.checks import BY_ID, CHECKS, Check, Outcome, Report, Status, choose
from catbus.conformance.kit import Options, run_kit

__all__ = ["run_kit", "Options", "CHECKS", "BY_ID", "Check", "Outcome", "Report", "Status",
           "choose"]
