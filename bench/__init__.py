"""catbus benchmarks: each prints ratios against a baseline measured in the same invocation.

Run them from the repository root (see ``bench/README.md``)::

    python bench/transport.py          # latency and throughput between two nodes
    python bench/step.py               # flat_evade steps/s per mode, trivial lockstep tick

This folder is a package so that node processes started by the launcher can import the
benchmark's own nodes as ``bench.transport_nodes:Ping`` and friends.
"""
