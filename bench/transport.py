"""Transport benchmark: catbus between two node processes beside plain pyzmq doing the same job.

What is measured and why. catbus promises that its peer-to-peer data plane costs little more than
ZeroMQ itself, so this measures the real node runtime -- node processes started by
``catbus.run(..., mode="parallel")`` (registry, launcher, the node process's run loop, inbox, lazy
decoding and ``on_message`` dispatch, ``DataPlane`` publishing) -- and, in the same invocation,
the plainest honest way to do the same job with pyzmq: two processes, a PUB/SUB pair on ``ipc``,
one msgpack frame per message carrying the same header information and the value, an ordinary
copying ``send`` and a blocking ``recv`` (``bench/raw_transport.py``, "plain"). That is THE
baseline of the small-message rows. Also measured, for information: the very
:func:`catbus.wire.codec.encode_message` frames over raw pyzmq (``send_multipart(copy=False)`` /
``recv_multipart(copy=False)``, :func:`catbus.wire.codec.decode_message`; "raw, catbus frame
layout": what the catbus frame layout costs by itself) and the same frames sent with care
("tuned"). Round trip: a reactive ``Ping`` node sends a ping from ``on_message`` and a reactive
``Pong`` node echoes it from ``on_message``; one round trip is from returning the ping (before the
runtime encodes it) to entering ``on_message`` with the decoded echo, the same span as the
baselines' encode-send-receive-decode; median over the round trips of a repetition, for a small
message (a dict with a 4-float array and a few scalars) and a 1 MiB array. Throughput: a
``Source`` node that the parallel runtime steps back to back publishes ``n`` messages; a reactive
``Sink`` counts them; messages per second at the receiver between message ``skip`` and the last
one, valid only with zero loss (sequence numbers; high-water marks of 100000 on both sides, as
catbus uses). For 1 MiB arrays the baseline is the catbus frame layout sent zero-copy (there,
that is the fast way), and the benchmark also checks that nothing is copied: on the sender, the
runtime's send carries a frame that *is* the array's memory, with ``copy=False`` and above pyzmq's
copy threshold (watched for that one send only); on the receiver, the decoded array is a view over
the received ``zmq.Frame`` (``.base`` chain and ``np.shares_memory``) and is read-only, as
docs/design.md promises. Process start-up is never timed. Targets: small round trip <=
1.2x plain; small throughput >= 0.8x plain; 1 MiB throughput >= 0.9x raw zero-copy, no copy.

    python bench/transport.py              # 5 repetitions (about 1-2 minutes)
    python bench/transport.py --reps 7
    python bench/transport.py --quick      # smoke test: 1 short repetition
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Row, alternate, code_state, median, print_table, setup_paths  # noqa: E402

setup_paths()

import catbus  # noqa: E402
from bench import raw_transport  # noqa: E402
from bench.transport_nodes import BIG_BYTES  # noqa: E402

RUN_TIMEOUT = 90.0


@dataclass
class Config:
    n_small: int = 2000        # timed small round trips per repetition
    n_big: int = 200           # timed 1 MiB round trips
    warmup: int = 200
    warmup_big: int = 20
    thr_small: int = 30000     # small messages per throughput repetition
    skip_small: int = 2000
    thr_big: int = 500         # 1 MiB messages per throughput repetition
    skip_big: int = 50
    big_bytes: int = BIG_BYTES

    @staticmethod
    def quick() -> "Config":
        return Config(n_small=200, n_big=20, warmup=20, warmup_big=5, thr_small=3000,
                      skip_small=300, thr_big=60, skip_big=10)


@dataclass
class Results:
    rtt_small: list[float]
    rtt_big: list[float]
    thr_small: list[float]
    thr_big: list[float]
    lossless: list[bool]
    checks: list[dict[str, Any]]
    send_small: list[float]
    send_big: list[float]


def new_results() -> Results:
    return Results([], [], [], [], [], [], [], [])


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- catbus ----------------------------------------------------------------------------------------
def _run_until_file(launch: dict, out: Path, timeout: float) -> Any:
    """Run a launch that never ends by itself and stop it like a person would (Ctrl-C, i.e. SIGINT
    to the launcher, which stops every node gracefully) once ``out`` exists."""
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not done.wait(0.01):
            if out.exists() or time.monotonic() > deadline:
                os.kill(os.getpid(), signal.SIGINT)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        return catbus.run(launch, progress=False, evaluate=False)
    finally:
        done.set()
        watcher.join()


def catbus_latency(cfg: Config, tmp: Path, res: Results) -> None:
    out = tmp / f"ping-{time.monotonic_ns()}.json"
    launch = {
        "name": "bench_latency", "mode": "parallel",
        "nodes": {
            "kick": {"class": "bench.transport_nodes:Kick"},
            "ping": {"class": "bench.transport_nodes:Ping",
                     "params": {"n_small": cfg.n_small, "n_big": cfg.n_big,
                                "warmup": cfg.warmup, "warmup_big": cfg.warmup_big,
                                "big_bytes": cfg.big_bytes, "out": str(out)}},
            "pong": {"class": "bench.transport_nodes:Pong"},
        },
    }
    _run_until_file(launch, out, RUN_TIMEOUT)
    if not out.exists():
        raise RuntimeError("catbus latency run: Ping never finished")
    data = json.loads(out.read_text())
    if data["errors"]:
        raise RuntimeError(f"catbus latency run: {data['errors'][:3]}")
    res.rtt_small.append(median(data["rtt"]["small"]) * 1e6)
    res.rtt_big.append(median(data["rtt"]["big"]) * 1e6)


def catbus_throughput(cfg: Config, tmp: Path, res: Results, big: bool) -> None:
    n, skip = (cfg.thr_big, cfg.skip_big) if big else (cfg.thr_small, cfg.skip_small)
    src_out = tmp / f"src-{time.monotonic_ns()}.json"
    sink_out = tmp / f"sink-{time.monotonic_ns()}.json"
    launch = {
        # Source ends the episode after its n messages; the duration only bounds a run that
        # goes wrong (without it, max_steps x Source's 1 us period would end it at 0.1 s).
        "name": "bench_throughput", "mode": "parallel", "duration": RUN_TIMEOUT,
        "nodes": {
            "src": {"class": "bench.transport_nodes:Source",
                    "params": {"n": n, "big_bytes": cfg.big_bytes if big else 0,
                               "out": str(src_out)}},
            "sink": {"class": "bench.transport_nodes:Sink",
                     "params": {"n": n, "skip": skip, "out": str(sink_out)}},
        },
    }
    result = catbus.run(launch, progress=False, evaluate=False)
    sink = json.loads(sink_out.read_text())
    src = json.loads(src_out.read_text())
    dropped = result.nodes["sink"].get("dropped", 0)
    lossless = sink["count"] == n and sink["gaps"] == 0 and dropped == 0
    _record_throughput(res, big, n, skip, sink, lossless, "catbus")
    (res.send_big if big else res.send_small).append(src["send_rate"] or float("nan"))
    if big:
        res.checks.append({"who": "catbus", **(src["checks"] or {}), **(sink["checks"] or {})})


def _record_throughput(res: Results, big: bool, n: int, skip: int, sink: dict, lossless: bool,
                       who: str) -> None:
    res.lossless.append(lossless)
    if not lossless or sink["t_first"] is None or sink["t_last"] is None:
        log(f"  {who}: LOSS or incomplete: received {sink['count']} of {n}, gaps {sink['gaps']}")
        rate = float("nan")
    else:
        rate = (n - 1 - skip) / (sink["t_last"] - sink["t_first"])
    (res.thr_big if big else res.thr_small).append(rate)


# -- raw pyzmq baseline ----------------------------------------------------------------------------
def _spawn(targets: list[tuple[Callable, tuple]]) -> list[Any]:
    """Start each target in a spawned process with a pipe appended to its arguments; return what
    each sends back (one object per process), then join them."""
    ctx = mp.get_context("spawn")
    procs, pipes = [], []
    for target, args in targets:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=target, args=(*args, child), daemon=True)
        proc.start()
        child.close()
        procs.append(proc)
        pipes.append(parent)
    results = []
    try:
        for pipe, proc in zip(pipes, procs):
            if not pipe.poll(RUN_TIMEOUT):
                raise RuntimeError(f"baseline process {proc.name} sent nothing")
            results.append(pipe.recv())
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return results


def baseline_latency(cfg: Config, tmp: Path, res: Results, tuned: bool = False) -> None:
    """Raw pyzmq round trips; ``tuned`` only measures small messages (the 1 MiB frame is sent
    zero-copy by both variants)."""
    a, b = f"ipc://{tmp}/ping.sock", f"ipc://{tmp}/pong.sock"
    n_big, warmup_big = (0, 0) if tuned else (cfg.n_big, cfg.warmup_big)
    ping, _ = _spawn([
        (raw_transport.ping, (a, b, cfg.n_small, n_big, cfg.warmup, warmup_big, cfg.big_bytes,
                              tuned)),
        (raw_transport.pong, (b, a, tuned)),
    ])
    if ping["errors"]:
        raise RuntimeError(f"baseline latency run: {ping['errors'][:3]}")
    res.rtt_small.append(median(ping["rtt"]["small"]) * 1e6)
    if not tuned:
        res.rtt_big.append(median(ping["rtt"]["big"]) * 1e6)


def plain_latency(cfg: Config, tmp: Path, res: Results) -> None:
    """The plain baseline's small round trips (one msgpack frame, send/recv)."""
    a, b = f"ipc://{tmp}/plain-ping.sock", f"ipc://{tmp}/plain-pong.sock"
    ping, _ = _spawn([
        (raw_transport.plain_ping, (a, b, cfg.n_small, cfg.warmup)),
        (raw_transport.plain_pong, (b, a)),
    ])
    if ping["errors"]:
        raise RuntimeError(f"plain latency run: {ping['errors'][:3]}")
    res.rtt_small.append(median(ping["rtt"]["small"]) * 1e6)


def plain_throughput(cfg: Config, tmp: Path, res: Results) -> None:
    n, skip = cfg.thr_small, cfg.skip_small
    endpoint = f"ipc://{tmp}/plain-src.sock"
    src, sink = _spawn([
        (raw_transport.plain_sender, (endpoint, n)),
        (raw_transport.plain_receiver, (endpoint, n, skip)),
    ])
    lossless = sink["count"] == n and sink["gaps"] == 0
    _record_throughput(res, False, n, skip, sink, lossless, "plain")
    res.send_small.append(src["send_rate"] or float("nan"))


def baseline_throughput(cfg: Config, tmp: Path, res: Results, big: bool,
                        tuned: bool = False) -> None:
    n, skip = (cfg.thr_big, cfg.skip_big) if big else (cfg.thr_small, cfg.skip_small)
    endpoint = f"ipc://{tmp}/src.sock"
    src, sink = _spawn([
        (raw_transport.sender, (endpoint, n, cfg.big_bytes if big else 0, tuned)),
        (raw_transport.receiver, (endpoint, n, skip, tuned)),
    ])
    lossless = sink["count"] == n and sink["gaps"] == 0
    _record_throughput(res, big, n, skip, sink, lossless, "tuned" if tuned else "baseline")
    (res.send_big if big else res.send_small).append(src["send_rate"] or float("nan"))
    if big:
        res.checks.append({"who": "baseline", **(src["checks"] or {}), **(sink["checks"] or {})})


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions of each measurement (default 5; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: small counts, one repetition unless --reps is given")
    parser.add_argument("--only", choices=("rtt", "throughput"), default=None,
                        help="measure only the round trips or only the throughputs (the table "
                             "then shows only those rows)")
    args = parser.parse_args(argv)
    reps = args.reps if args.reps is not None else (1 if args.quick else 5)
    # The smoke test asks for the stacks of a stuck run with SIGUSR1 before it kills it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    cfg = Config.quick() if args.quick else Config()
    mine, plain, base, tuned = new_results(), new_results(), new_results(), new_results()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="catbus-bench-") as folder:
        tmp = Path(folder)

        def each(*runs: Callable[[], None]) -> Callable[[], None]:
            def run_all() -> None:
                for run in runs:
                    run()
            return run_all

        pairs = [
            ("round trip", lambda: catbus_latency(cfg, tmp, mine),
             each(lambda: plain_latency(cfg, tmp, plain),
                  lambda: baseline_latency(cfg, tmp, base),
                  lambda: baseline_latency(cfg, tmp, tuned, tuned=True))),
            ("small throughput", lambda: catbus_throughput(cfg, tmp, mine, big=False),
             each(lambda: plain_throughput(cfg, tmp, plain),
                  lambda: baseline_throughput(cfg, tmp, base, big=False),
                  lambda: baseline_throughput(cfg, tmp, tuned, big=False, tuned=True))),
            ("1 MiB throughput", lambda: catbus_throughput(cfg, tmp, mine, big=True),
             lambda: baseline_throughput(cfg, tmp, base, big=True)),
        ]
        if args.only == "rtt":
            pairs = pairs[:1]
        elif args.only == "throughput":
            pairs = pairs[1:]
        alternate(reps, pairs, log=log)
    catbus_label = "2 catbus node processes, parallel mode, the real node runtime"
    plain_label = ("plain pyzmq: 2 processes, PUB/SUB on ipc, one msgpack frame [topic, header "
                   "fields..., value], send()/blocking recv()")
    raw_label = ("raw pyzmq, catbus frame layout: same codec frames, "
                 "send_multipart(copy=False)/recv_multipart(copy=False)")
    tuned_label = ("raw pyzmq, catbus frame layout tuned: per-frame send/recv, zero-copy only "
                   "for frames >= 64 KiB")
    mib_s = [r * cfg.big_bytes / 2**20 for r in mine.thr_big]
    mib_s_base = [r * cfg.big_bytes / 2**20 for r in base.thr_big]
    rows = [
        Row("small round trip", "us", mine.rtt_small, plain.rtt_small, 1.2, False,
            catbus_label + " (reactive Ping/Pong in on_message)", plain_label,
            f"median of {cfg.n_small} round trips per repetition"),
        Row("small round trip vs raw, catbus frame layout", "us", mine.rtt_small,
            base.rtt_small, None, False, catbus_label, raw_label),
        Row("small round trip vs raw, layout tuned", "us", mine.rtt_small, tuned.rtt_small,
            None, False, catbus_label, tuned_label),
        Row("raw, catbus frame layout / plain (rtt)", "us", base.rtt_small, plain.rtt_small,
            None, False, raw_label, plain_label, "what the catbus frame layout alone costs"),
        Row("1 MiB round trip", "us", mine.rtt_big, base.rtt_big, None, False,
            catbus_label, raw_label, f"median of {cfg.n_big} round trips per repetition"),
        Row("small throughput", "msg/s", mine.thr_small, plain.thr_small, 0.8, True,
            catbus_label + " (Source stepped back to back -> reactive Sink)", plain_label,
            f"{cfg.thr_small} messages, rate over the last {cfg.thr_small - cfg.skip_small - 1}"),
        Row("small throughput vs raw, catbus frame layout", "msg/s", mine.thr_small,
            base.thr_small, None, True, catbus_label, raw_label),
        Row("small throughput vs raw, layout tuned", "msg/s", mine.thr_small, tuned.thr_small,
            None, True, catbus_label, tuned_label),
        Row("1 MiB throughput", "msg/s", mine.thr_big, base.thr_big, 0.9, True,
            catbus_label, raw_label + ", zero-copy send",
            f"{cfg.thr_big} messages of 1 MiB: GiB/s median catbus {median(mib_s) / 1024:.2f}, "
            f"baseline {median(mib_s_base) / 1024:.2f}"),
    ]
    catbus_checks = [c for c in mine.checks if c["who"] == "catbus"]
    base_checks = [c for c in base.checks if c["who"] == "baseline"]

    def every(items: list[dict], *keys: str) -> bool:
        return bool(items) and all(bool(c.get(k)) for c in items for k in keys)

    checks = [
        ("zero loss in every throughput repetition (catbus)", all(mine.lossless)),
        ("zero loss in every throughput repetition (baselines)",
         all(plain.lossless) and all(base.lossless) and all(tuned.lossless)),
        ("catbus sender: 1 MiB frame is the array's memory, copy=False, >= copy threshold",
         every(catbus_checks, "send_frame_shares_array_memory", "send_copy_false",
               "send_frame_over_copy_threshold")),
        ("catbus receiver: decoded 1 MiB array is a view over the zmq.Frame (no copy)",
         every(catbus_checks, "recv_view_of_zmq_frame")),
        ("catbus receiver: decoded array is read-only (docs/design.md: received arrays are read-only)",
         every(catbus_checks, "recv_read_only")),
        ("baseline: 1 MiB sent and received without a copy",
         every(base_checks, "send_frame_shares_array_memory", "recv_view_of_zmq_frame")),
    ]
    if args.only is not None:   # rows and checks of what was not measured are left out
        rows = [row for row in rows if row.catbus]
        if args.only == "rtt":
            checks = []
    print_table("catbus transport vs plain pyzmq", rows, reps, checks=checks, extra=[
        "", "  sender-side rates (msg/s, median; the receiver's rate can only be lower -- a "
            "sender far above the receiver means the receiver limits):",
        f"    small: catbus {median(mine.send_small):,.0f}, plain {median(plain.send_small):,.0f}, "
        f"catbus layout {median(base.send_small):,.0f}, tuned {median(tuned.send_small):,.0f};  "
        f"1 MiB: catbus {median(mine.send_big):,.0f}, baseline {median(base.send_big):,.0f}",
        "", f"  total time {time.monotonic() - began:.0f} s; "
            f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
            f"catbus {code_state()}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
