"""Where the node processes of ``bench/transport.py`` spend their processor, per function.

Not a benchmark (no ratios): a diagnostic for when ``bench/transport.py`` misses a target. Runs
the transport benchmark's catbus runs (``latency``: Kick/Ping/Pong; ``throughput``: Source ->
Sink, small messages) with every node class subclassed so that its own process runs
:mod:`cProfile` on a **per-thread CPU clock** from the end of ``setup`` to ``close`` (waiting in
``poll`` does not count). Numbers are microseconds of CPU per message handled by that node.
cProfile inflates functions called very often; compare totals with ``bench/transport.py``.

    python bench/transport_profile.py latency --n 3000
    python bench/transport_profile.py throughput --n 30000
    python bench/transport_profile.py latency --cpu   # no profiler: CPU us per message only,
                                                      # beside the plain pyzmq baseline's
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import setup_paths  # noqa: E402

setup_paths()

from bench.profile_stepped import ENV_VAR, Profiled, report  # noqa: E402
from bench.transport_nodes import Ping, Pong, Sink, Source  # noqa: E402


CPU_VAR = "CATBUS_BENCH_CPU_DIR"


class CpuTimed:
    """Mixin: with CATBUS_BENCH_CPU_DIR set, write this process's main-thread CPU seconds
    between setup and close (no profiler: the real cost, unaffected by waiting)."""

    _cpu0: float | None = None

    def setup(self, params: dict) -> None:
        super().setup(params)  # type: ignore[misc]
        if os.environ.get(CPU_VAR):
            self._cpu0 = time.thread_time()

    def close(self) -> None:
        if self._cpu0 is not None:
            Path(os.environ[CPU_VAR], f"{self.name}.cpu").write_text(  # type: ignore[attr-defined]
                str(time.thread_time() - self._cpu0))
        super().close()  # type: ignore[misc]


class PPing(Profiled, Ping):
    pass


class PPong(Profiled, Pong):
    pass


class PSource(Profiled, Source):
    pass


class PSink(Profiled, Sink):
    pass


class CPing(CpuTimed, Ping):
    pass


class CPong(CpuTimed, Pong):
    pass


class CSource(CpuTimed, Source):
    pass


class CSink(CpuTimed, Sink):
    pass


def _plain_cpu(tmp: Path, n: int) -> None:
    """The same CPU figure for the plain pyzmq baseline of bench/transport.py (one msgpack
    frame, send/recv), run right after: what catbus's per-message CPU compares with."""
    from bench.transport import _spawn
    from bench import raw_transport

    a, b = f"ipc://{tmp}/plain-ping.sock", f"ipc://{tmp}/plain-pong.sock"
    ping, pong = _spawn([(raw_transport.plain_ping, (a, b, n, 100)),
                         (raw_transport.plain_pong, (b, a))])
    rtt = sorted(ping["rtt"]["small"])
    count = ping["messages"]
    print(f"plain pyzmq baseline: median round trip {rtt[len(rtt) // 2] * 1e6:.1f} us; "
          f"ping {ping['cpu'] / count * 1e6:.1f}, pong {pong['cpu'] / count * 1e6:.1f} us CPU "
          "per message (main thread)")


def main(argv: list[str] | None = None) -> int:
    import catbus
    from bench.transport import _run_until_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", choices=("latency", "throughput"))
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--cpu", action="store_true",
                        help="no profiler: only CPU us per message of each node's main thread")
    args = parser.parse_args(argv)
    prefix = "C" if args.cpu else "P"
    with tempfile.TemporaryDirectory(prefix="catbus-profile-") as folder:
        os.environ[CPU_VAR if args.cpu else ENV_VAR] = folder
        tmp = Path(folder)
        if args.run == "latency":
            n = args.n or 3000
            out = tmp / "ping.json"
            launch = {"name": "prof_latency", "mode": "parallel", "nodes": {
                "kick": {"class": "bench.transport_nodes:Kick"},
                "ping": {"class": f"bench.transport_profile:{prefix}Ping",
                         "params": {"n_small": n, "n_big": 0, "warmup": 100, "warmup_big": 0,
                                    "out": str(out)}},
                "pong": {"class": f"bench.transport_profile:{prefix}Pong"}}}
            _run_until_file(launch, out, 90)
            rtt = sorted(json.loads(out.read_text())["rtt"]["small"])
            print(f"median round trip with profiling on: {rtt[len(rtt) // 2] * 1e6:.1f} us")
            count = n + 100
        else:
            n = args.n or 30000
            # The duration only bounds a run that goes wrong: without it, max_steps x Source's
            # 1 us period ended the run after ~0.1 s of cycles, a third of the messages sent.
            launch = {"name": "prof_thr", "mode": "parallel", "duration": 120, "nodes": {
                "src": {"class": f"bench.transport_profile:{prefix}Source",
                        "params": {"n": n, "out": str(tmp / "src.json")}},
                "sink": {"class": f"bench.transport_profile:{prefix}Sink",
                         "params": {"n": n, "skip": 1000, "out": str(tmp / "sink.json")}}}}
            began = time.monotonic()
            result = catbus.run(launch, progress=False, evaluate=False)
            print(f"run took {time.monotonic() - began:.1f} s")
            count = result.nodes["sink"].get("received") or n
            if count != n:
                print(f"the sink received {count} of {n} messages ({result.end_reason}); "
                      "figures are per message received")
        if args.cpu:
            for path in sorted(tmp.glob("*.cpu")):
                print(f"{path.stem}: {float(path.read_text()) / count * 1e6:.1f} us CPU per "
                      "message (main thread, setup to close)")
            if args.run == "latency":
                _plain_cpu(tmp, n)
        else:
            report(tmp, count, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
