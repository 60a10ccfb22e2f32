"""Baseline of the trivial lockstep in ``bench/step.py``: four processes over raw pyzmq.

The same shape as the catbus run of :mod:`bench.trivial_nodes`: ``env`` publishes a small message
(the same codec frames) to ``a1/obs`` and ``a2/obs`` and then waits for both agents' replies
before its next tick; ``a1`` and ``a2`` answer each observation; a fourth process subscribes to
everything and only counts. Blocking receives, ``send_multipart(copy=False)``, no poller, no
progress messages, no flow control -- the least a lockstep of this shape can cost in Python.

Each publisher binds an XPUB and waits until it has seen the subscriptions of all its readers,
then all four meet at a barrier, so nothing is lost and start-up is not timed. Tick time = (end of
env's tick-N step - start of its tick-0 step) / N, the rule catbus's ``active_s`` follows (a "step"
is building the two observations).

The same lockstep also hosts flat_evade's real node objects: in four processes (``flat_env``,
``flat_agent`` twice, ``recorder``) and in two (``flat_world``: env + human called in one process,
``flat_agent_alone``: the robot), the baselines of flat_evade's stepped rows.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from catbus.wire import codec
from bench.common import warm_allocator
from bench.transport_nodes import small_message
from bench.trivial_nodes import CpuMeter

TIMEOUT_MS = 30_000
END = {"end": True}


def _publisher(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    pub.setsockopt(zmq.LINGER, -1)
    pub.bind(endpoint)
    return pub


def _subscriber(ctx: zmq.Context, endpoints: list[str], topics: list[bytes]) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RECONNECT_IVL, 10)
    sub.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    for topic in topics:
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    for endpoint in endpoints:
        sub.connect(endpoint)
    return sub


def _wait_subscriptions(pub: zmq.Socket, wanted: set[bytes]) -> None:
    seen: set[bytes] = set()
    while not wanted <= seen:
        if not pub.poll(TIMEOUT_MS):
            raise TimeoutError(f"subscriptions missing: {wanted - seen}")
        seen.add(pub.recv())


def _send(pub: zmq.Socket, topic: str, name: str, seq: int, value: Any) -> None:
    header = codec.Header(name, seq, seq, 0.0, time.time())
    pub.send_multipart(codec.encode_message(topic, header, value), copy=False)


def env(endpoints: dict[str, str], steps: int, barrier: Any, conn: Any) -> None:
    warm_allocator()
    ctx = zmq.Context()
    pub = _publisher(ctx, endpoints["env"])
    sub = _subscriber(ctx, [endpoints["a1"], endpoints["a2"]],
                      [codec.topic_frame("a1/action"), codec.topic_frame("a2/action")])
    _wait_subscriptions(pub, {b"\x01" + codec.topic_frame("a1/obs"),
                              b"\x01" + codec.topic_frame("a2/obs"), b"\x01"})
    barrier.wait()
    errors = []
    cpu = CpuMeter()
    t0 = t1 = 0.0
    for tick in range(steps + 1):
        if tick > 0:
            for _ in range(2):   # both replies of the previous tick
                _, _, reply = codec.decode_message(sub.recv_multipart(copy=False))
                if reply["seq"] != tick - 1:
                    errors.append(f"tick {tick}: reply for {reply['seq']}")
        cpu.mark()
        began = time.perf_counter()
        obs1, obs2 = small_message(tick), small_message(tick)     # the env's "step"
        ended = time.perf_counter()
        if tick == 0:
            t0 = began
        t1 = ended
        _send(pub, "a1/obs", "env", tick, obs1)
        _send(pub, "a2/obs", "env", tick, obs2)
    for _ in range(2):
        codec.decode_message(sub.recv_multipart(copy=False))
    _send(pub, "a1/obs", "env", steps + 1, END)
    _send(pub, "a2/obs", "env", steps + 1, END)
    conn.send({"active_s": t1 - t0, "errors": errors, "cpu": cpu.result()})
    pub.close()
    sub.close()
    ctx.term()


def agent(name: str, endpoints: dict[str, str], barrier: Any, conn: Any) -> None:
    warm_allocator()
    ctx = zmq.Context()
    pub = _publisher(ctx, endpoints[name])
    sub = _subscriber(ctx, [endpoints["env"]], [codec.topic_frame(f"{name}/obs")])
    _wait_subscriptions(pub, {b"\x01" + codec.topic_frame(f"{name}/action"), b"\x01"})
    barrier.wait()
    cpu = CpuMeter()
    seq = 0
    while True:
        _, _, obs = codec.decode_message(sub.recv_multipart(copy=False))
        if obs.get("end"):
            break
        cpu.mark()
        _send(pub, f"{name}/action", name, seq, small_message(obs["seq"]))
        seq += 1
    conn.send({"replies": seq, "cpu": cpu.result()})
    pub.close()
    sub.close()
    ctx.term()


def recorder(endpoints: dict[str, str], expected: int, barrier: Any, conn: Any) -> None:
    """Subscribes to everything (every endpoint) and counts ``expected`` messages (trivial run:
    4 data messages per tick plus 2 end markers)."""
    warm_allocator()
    ctx = zmq.Context()
    sub = _subscriber(ctx, list(endpoints.values()), [b""])
    barrier.wait()
    count = 0
    cpu = CpuMeter()
    try:
        while count < expected:
            sub.recv_multipart(copy=False)
            cpu.mark()
            count += 1
    except zmq.Again:
        pass
    conn.send({"received": count, "expected": expected, "cpu": cpu.result()})
    sub.close()
    ctx.term()


# -- the same lockstep hosting the real flat_evade nodes (an informational floor) ------------------
FLAT_AGENTS = ("robot", "human")


def flat_env(endpoints: dict[str, str], steps: int, barrier: Any, conn: Any) -> None:
    """flat_evade's env node (set up as catbus does) in the raw lockstep: wait for both actions
    of the previous tick, step, publish robot/sensors, human/sensors and env/state."""
    from bench.manager_lockstep import _node

    warm_allocator()
    node, schedule = _node("env", steps)
    ctx = zmq.Context()
    pub = _publisher(ctx, endpoints["env"])
    sub = _subscriber(ctx, [endpoints[a] for a in FLAT_AGENTS],
                      [codec.topic_frame(f"{a}/action") for a in FLAT_AGENTS])
    _wait_subscriptions(pub, {b"\x01" + codec.topic_frame(f"{a}/sensors") for a in FLAT_AGENTS}
                        | {b"\x01"})
    barrier.wait()
    actions: dict[str, Any] = {f"{a}/action": None for a in FLAT_AGENTS}
    t0 = t1 = 0.0
    for tick in range(steps + 1):
        if tick > 0:
            for _ in FLAT_AGENTS:
                topic, _, value = codec.decode_message(sub.recv_multipart(copy=False))
                actions[topic] = value
        began = time.perf_counter()
        out = node.step(schedule.sim_time(tick), actions)
        ended = time.perf_counter()
        if tick == 0:
            t0 = began
        t1 = ended
        published = (("robot/sensors", out["robot/sensors"]),
                     ("human/sensors", out["human/sensors"]), ("env/state", out["~/state"]))
        for topic, value in published:
            _send(pub, topic, "env", tick, value)
    for _ in FLAT_AGENTS:
        sub.recv_multipart(copy=False)
    for agent_name in FLAT_AGENTS:
        _send(pub, f"{agent_name}/sensors", "env", steps + 1, END)
    node.close()
    conn.send({"active_s": t1 - t0, "errors": []})
    pub.close()
    sub.close()
    ctx.term()


def flat_agent(name: str, endpoints: dict[str, str], steps: int, barrier: Any, conn: Any) -> None:
    """flat_evade's agent ``name`` in the 4-process raw lockstep (its action read by the env and
    the recorder)."""
    _flat_agent(name, endpoints, steps, barrier, conn, recorded=True)


def flat_agent_alone(name: str, endpoints: dict[str, str], steps: int, barrier: Any,
                     conn: Any) -> None:
    """The same agent in the 2-process lockstep, where only the world process reads its action
    (no recorder's subscription to wait for)."""
    _flat_agent(name, endpoints, steps, barrier, conn, recorded=False)


def _flat_agent(name: str, endpoints: dict[str, str], steps: int, barrier: Any, conn: Any,
                recorded: bool) -> None:
    from bench.manager_lockstep import _node

    warm_allocator()
    node, schedule = _node(name, steps)
    ctx = zmq.Context()
    pub = _publisher(ctx, endpoints[name])
    sub = _subscriber(ctx, [endpoints["env"]], [codec.topic_frame(f"{name}/sensors")])
    _wait_subscriptions(pub, {b"\x01" + codec.topic_frame(f"{name}/action")}
                        | ({b"\x01"} if recorded else set()))
    barrier.wait()
    replies = 0
    while True:
        _, header, sensors = codec.decode_message(sub.recv_multipart(copy=False))
        if sensors.get("end"):
            break
        out = node.step(schedule.sim_time(header.tick), {"~/sensors": sensors})
        _send(pub, f"{name}/action", name, header.tick, out["~/action"] if out else None)
        replies += 1
    node.close()
    conn.send({"replies": replies})
    pub.close()
    sub.close()
    ctx.term()


def flat_world(endpoints: dict[str, str], steps: int, barrier: Any, conn: Any) -> None:
    """flat_evade's env and human nodes in one process of a 2-process raw lockstep, the robot
    (:func:`flat_agent_alone`) in the other. Each tick, in launch order: wait for the robot's
    action of the previous tick, step the env (on that action and the human's of the previous
    tick), send ``robot/sensors`` (the only message that leaves the process, so the robot works
    while the human steps), then step the human on the env's ``human/sensors`` by a plain call.
    Nothing is encoded for or sent to a recorder. Timed as :func:`flat_env`."""
    from bench.manager_lockstep import _node

    warm_allocator()
    env_node, schedule = _node("env", steps)
    human, _ = _node("human", steps)
    ctx = zmq.Context()
    pub = _publisher(ctx, endpoints["env"])
    sub = _subscriber(ctx, [endpoints["robot"]], [codec.topic_frame("robot/action")])
    _wait_subscriptions(pub, {b"\x01" + codec.topic_frame("robot/sensors")})
    barrier.wait()
    actions: dict[str, Any] = {"robot/action": None, "human/action": None}
    errors = []
    t0 = t1 = 0.0
    for tick in range(steps + 1):
        if tick > 0:
            _, header, value = codec.decode_message(sub.recv_multipart(copy=False))
            if header.tick != tick - 1:
                errors.append(f"tick {tick}: robot action of tick {header.tick}")
            actions["robot/action"] = value
        sim_time = schedule.sim_time(tick)
        began = time.perf_counter()
        out = env_node.step(sim_time, actions)
        ended = time.perf_counter()
        if tick == 0:
            t0 = began
        t1 = ended
        _send(pub, "robot/sensors", "env", tick, out["robot/sensors"])
        acted = human.step(sim_time, {"~/sensors": out["human/sensors"]})
        actions["human/action"] = acted["~/action"] if acted else None
    sub.recv_multipart(copy=False)       # the robot's action of the last tick
    _send(pub, "robot/sensors", "env", steps + 1, END)
    env_node.close()
    human.close()
    conn.send({"active_s": t1 - t0, "errors": errors})
    pub.close()
    sub.close()
    ctx.term()
