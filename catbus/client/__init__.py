"""A client of live runs: finding a run, asking its registry, watching it, swapping its nodes.

The command line (:mod:`catbus.cli`) and the Foxglove bridge both talk to running runs through
this package, so neither depends on the other. Everything here returns data and raises
:class:`~catbus.errors.CatbusError`; what to print is the caller's choice.

- :mod:`catbus.client.runs`: :func:`find_run`, :func:`find_registry`, :func:`query_graph`,
  :func:`topics_of`, :func:`live_runs`.
- :mod:`catbus.client.watch`: :class:`RunWatch` (has the run ended?), :func:`subscribe` (a
  topic straight from its publishers), :data:`WATCH_EVERY`, :data:`REGISTRY_SILENCE`.
- :mod:`catbus.client.ask`: one request to a registry (:func:`ask_registry`, :class:`RegistryLink`).
- :mod:`catbus.client.swap`: :func:`request_swap` (``catbus swap``, ``RunHandle.swap``).
- :mod:`catbus.client.publish`: ``catbus topic pub`` (a guest publisher joining a parallel run;
  imported on its own: it runs a node).
"""

from catbus.client.ask import RegistryLink, ask_registry
from catbus.client.runs import client_keys, find_registry, find_run, live_runs, query_graph, \
    topics_of
from catbus.client.swap import RunGone, SwapFailed, ask_graph, request_swap
from catbus.client.watch import REGISTRY_SILENCE, WATCH_EVERY, RunWatch, subscribe

__all__ = ["find_run", "find_registry", "client_keys", "query_graph", "topics_of", "live_runs",
           "RunWatch", "subscribe", "WATCH_EVERY", "REGISTRY_SILENCE", "ask_registry",
           "RegistryLink", "request_swap", "ask_graph", "SwapFailed", "RunGone"]
