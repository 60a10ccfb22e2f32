"""From what the kit saw to a verdict per check: pure functions of the records, no process and
no socket (so each rule is unit-tested on made-up records).

Every reason is one line that says what the node did and what the protocol wants instead, in
the document's words; the check's pointer (``docs/protocol.md#...``) follows it in the report.
"""

from __future__ import annotations

from typing import Callable, Mapping

from catbus.conformance.checks import BY_ID, Check, Outcome, Run, failed, passed, skipped
from catbus.conformance.observer import PROBE, Observation, Seen
from catbus.conformance.probe import EXIT_WAIT, JoinRecord
from catbus.conformance.runs import BASE, END_AT, Plan, RunRecord
from catbus.wire.protocol import PROTOCOL_VERSION, STATS_TOPIC

Records = Mapping[Run, RunRecord]
#: The counters ``catbus/stats`` must carry (``malformed_by`` may come too).
STATS_KEYS = ("malformed", "dropped", "duplicates", "received")


def judge(check: Check, name: str, join: JoinRecord | None, plan: Plan | None,
          records: Records) -> Outcome:
    """The outcome of ``check`` for node ``name``."""
    if check.id in ("register", "protocol", "reject"):
        return JOIN_JUDGES[check.id](check, name, join)
    if plan is None:
        return skipped(check, "needs a well-formed register of protocol "
                              f"{PROTOCOL_VERSION} first (see register, protocol)")
    missing = [run.value for run in check.runs if run is not Run.JOIN and run not in records]
    if missing:
        return skipped(check, f"the {', '.join(missing)} run was not made")
    return RUN_JUDGES[check.id](check, name, plan, records)


# -- the join probe ---------------------------------------------------------------------------
def judge_register(check: Check, name: str, join: JoinRecord) -> Outcome:
    register = join.register
    if register is None or join.problem:
        return failed(check, join.problem or "no register")
    if register.name != name:
        return failed(check, f"it registered as {register.name!r}, not as {name!r} (take the "
                             "name from {name} or CATBUS_NAME)")
    period = "reactive" if register.period is None else f"period {register.period:g} s"
    return passed(check, f"registered as {name}: {len(register.inputs)} input(s), "
                         f"{len(register.outputs)} output(s), {period}, endpoint bound")


def judge_protocol(check: Check, name: str, join: JoinRecord) -> Outcome:
    register = join.register
    if register is None:
        return skipped(check, f"no register to read the version from ({join.problem})")
    if register.protocol == PROTOCOL_VERSION:
        return passed(check, f"register.protocol is {PROTOCOL_VERSION}")
    absent = " (absent: counted as 1)" if register.protocol == 1 else ""
    return failed(check, f"register.protocol is {register.protocol}{absent}; this catbus "
                         f"speaks {PROTOCOL_VERSION} and its registry refuses any other")


def judge_reject(check: Check, name: str, join: JoinRecord) -> Outcome:
    if join.register is None and join.problem and join.problem.startswith("no register"):
        return skipped(check, "it never registered, so it was never refused")
    if join.exit_code == 1:
        return passed(check, "exited with code 1 after reject")
    if join.exit_code is None:
        return failed(check, f"still running {EXIT_WAIT:g} s after reject (print the reason "
                             "and exit with code 1)")
    return failed(check, f"exited with code {join.exit_code} after reject; expected 1")


JOIN_JUDGES: dict[str, Callable[[Check, str, JoinRecord], Outcome]] = {
    "register": judge_register, "protocol": judge_protocol, "reject": judge_reject}


# -- what the runs show -----------------------------------------------------------------------
def did_not_run(record: RunRecord) -> str | None:
    """Why a run never started (its failure), or None if it did."""
    if record.observation.started or record.result is not None:
        return None
    return record.error or "the run did not start"


def announced(observation: Observation) -> int:
    """The highest ``through`` the node announced before its final progress (data headers
    and progress messages), -1 if none: what it has completed."""
    best = -1
    for seen in observation.messages:
        progress = seen.progress
        if progress is not None and progress[4] is not True:
            best = max(best, progress[2])
        elif seen.data and seen.header is not None and seen.header.through is not None:
            best = max(best, seen.header.through)
    return best


def exit_problem(record: RunRecord, when: str) -> str | None:
    """What is wrong with how the node left ``record``'s run, or None (exit 0, done)."""
    if record.exit_code is None:
        return f"still running {EXIT_WAIT:g} s after {when}"
    if record.exit_code != 0:
        tail = f" ({record.stderr})" if record.stderr else ""
        return f"exited with code {record.exit_code} after {when}; expected 0{tail}"
    state = record.summary.get("state")
    if state != "done":
        why = f": {record.error}" if record.error else ""
        return f"the registry has it {state or 'unknown'}, not done, after {when}{why}"
    return None


def judge_welcome(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.STEPPED]
    if (why := did_not_run(record)) is not None:
        return skipped(check, f"the stepped run did not start: {why}")
    topics = {topic for _, topic in plan.outputs}
    data = [m for m in record.observation.data() if m.header.publisher == name]
    strays = sorted({m.topic for m in data} - topics)
    if strays:
        return failed(check, f"it published on {', '.join(strays)}; the welcome's outputs are "
                             f"{', '.join(sorted(topics))}")
    k = plan.k
    ticks = [m.header.tick for m in data] + [p[1] for p in record.observation.progress()
                                             if p[4] is not True and len(p) < 7]
    off = sorted({t for t in ticks if k is not None and t >= 0 and t % k})
    if off:
        return failed(check, f"it stepped tick {off[0]}, which is not a due tick: the "
                             f"welcome's period is {k} base ticks ({k * BASE:g} s)")
    received = record.summary.get("received")
    if plan.feeders and received == 0:
        return failed(check, "it received nothing on its inputs: subscribe the welcome's "
                             "input topics, not the declared names")
    return passed(check, f"period and topics from the welcome ({k or 'reactive'} ticks, "
                         f"{', '.join(sorted(topics)) or 'no outputs'})")


def judge_ready(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.STEPPED]
    why = did_not_run(record)
    if why is not None:
        return failed(check, why)
    return passed(check, "the run started: it said ready once its neighbours' hellos came")


def judge_hellos(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.STOP]
    if (why := did_not_run(record)) is not None:
        return skipped(check, f"the stop run did not start: {why}")
    seen = record.observation
    if not seen.asked:
        return failed(check, "it sent nothing once started (no data, no progress), so no "
                             "hello could be asked while it ran")
    if seen.answer is None:
        return failed(check, f"no catbus/progress with heard {{{PROBE}: ...}} answered "
                             f"catbus/hello/{PROBE} (answer every hello once started)")
    return passed(check, f"answered catbus/hello/{PROBE}: progress through "
                         f"{seen.answer[2]}, heard {seen.answer[6]}")


def judge_heartbeats(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.STOP]
    if (why := did_not_run(record)) is not None:
        return skipped(check, f"the stop run did not start: {why}")
    reports = record.observation.reports
    moved = [r for r in reports if isinstance(r[0], int) and r[0] >= 0]
    if moved:
        tick, steps, _ = moved[-1]
        return passed(check, f"its heartbeats reported tick {tick}, {steps} step(s)")
    if not reports:
        return failed(check, "the registry's graph never listed it")
    return failed(check, "its heartbeats kept saying tick -1 after it had stepped (send hb "
                         "{tick, steps, state} every 0.5 s with the last tick stepped)")


def judge_through(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.STEPPED]
    if (why := did_not_run(record)) is not None:
        return skipped(check, f"the stepped run did not start: {why}")
    schedule = record.schedule
    k, last = plan.k, schedule.last_tick
    bad = next((m for m in record.observation.messages if m.problem), None)
    if bad is not None:
        return failed(check, f"a message on {bad.topic} was refused: {bad.problem}")
    data = [m for m in record.observation.data() if m.header.publisher == name]
    for seen in data:
        tick, through = seen.header.tick, seen.header.through
        expected = None if k is None else min(tick + k - 1, last)
        if through != expected:
            return failed(check, f"its {seen.topic} of tick {tick} carried through {through}; "
                                 f"expected {expected} (min(t + k - 1, last_tick), k = {k})")
        if seen.header.sim_time != schedule.sim_time(tick):
            return failed(check, f"its {seen.topic} of tick {tick} has sim_time "
                                 f"{seen.header.sim_time!r}; expected tick * num / den = "
                                 f"{schedule.sim_time(tick)!r}")
    if record.error and "final progress" not in record.error:
        return failed(check, record.error)
    return passed(check, f"{len(data)} data message(s) carried min(t + k - 1, {last}); the "
                         "lockstep never stalled")


def judge_final(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    said = []
    for run in (Run.STEPPED, Run.STOP, Run.PARALLEL):
        record = records[run]
        if did_not_run(record) is not None:
            continue
        problem, through = final_problem(record, plan)
        if problem is not None:
            return failed(check, f"{run.value} run: {problem}")
        said.append(f"{run.value} through {through}")
    if not said:
        return skipped(check, "no run started")
    return passed(check, f"final progress in every run: {', '.join(said)}")


def final_problem(record: RunRecord, plan: Plan) -> tuple[str | None, int | None]:
    """What is wrong with the node's final progress in ``record`` (None), and its through."""
    seen = record.observation
    progress = seen.progress()
    finals = seen.finals()
    if not finals:
        waited = f" ({record.error})" if record.error else ""
        return f"no catbus/progress with final true before it left{waited}", None
    if progress[-1][4] is not True:
        return "it sent progress after its final progress", None
    final = finals[-1]
    through, end = final[2], final[3]
    if record.run is Run.PARALLEL:
        last = record.summary.get("tick")
        if isinstance(last, int):
            expected = last if end is None else min(last, end)
            if through != expected:
                return (f"final through {through}; it stepped cycle {last} last (end "
                        f"{end}): claim the last cycle stepped, capped at the end"), through
        return None, through
    expected = announced(seen)
    if record.run is Run.STEPPED and not record.failed:
        expected = record.schedule.last_tick
    if through != expected:
        return (f"final through {through}; it had completed tick {expected} (claim what "
                "was completed, never more)"), through
    return None, through


def judge_stats(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.STEPPED]
    if (why := did_not_run(record)) is not None:
        return skipped(check, f"the stepped run did not start: {why}")
    messages = record.observation.messages
    stats = [i for i, m in enumerate(messages) if m.topic == STATS_TOPIC]
    if not stats:
        return failed(check, "no catbus/stats as it left (publish {node, incarnation, stats: "
                             "{malformed, dropped, duplicates, received}} before the final "
                             "progress)")
    seen = messages[stats[-1]]
    problem = stats_problem(seen, name)
    if problem is not None:
        return failed(check, problem)
    finals = [i for i, m in enumerate(messages) if m.progress is not None and m.progress[4]]
    if finals and finals[-1] < stats[-1]:
        return failed(check, "catbus/stats came after the final progress (a reader stops "
                             "listening at the final progress)")
    if record.recording is not None and not recorded_stats(record, name):
        return failed(check, "the recorder did not keep its catbus/stats")
    return passed(check, f"catbus/stats at tick {seen.header.tick}, before the final "
                         "progress, recorded")


def stats_problem(seen: Seen, name: str) -> str | None:
    """What is wrong with a ``catbus/stats`` message, or None."""
    if seen.problem:
        return seen.problem
    value, header = seen.payload, seen.header
    if not isinstance(value, dict) or value.get("node") != name:
        return f"catbus/stats payload {value!r:.80} is not {{node: {name!r}, ...}}"
    if value.get("incarnation") != header.incarnation:
        return (f"catbus/stats incarnation {value.get('incarnation')!r} is not the header's "
                f"{header.incarnation}")
    counters = value.get("stats")
    if not isinstance(counters, dict):
        return "catbus/stats has no map 'stats'"
    missing = [key for key in STATS_KEYS if type(counters.get(key)) is not int]
    if missing:
        return f"catbus/stats has no integer {', '.join(missing)}"
    if header.through is not None:
        return f"catbus/stats carried through {header.through}; it carries nil"
    return None


def recorded_stats(record: RunRecord, name: str) -> bool:
    from catbus.recording.reader import Recording

    return any(m.topic == STATS_TOPIC and m.publisher == name
               for m in Recording(record.recording).messages())


def judge_done(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.STEPPED]
    if (why := did_not_run(record)) is not None:
        return skipped(check, f"the stepped run did not start: {why}")
    problem = exit_problem(record, "the run's end")
    if problem is not None:
        return failed(check, problem)
    return passed(check, "said done and exited 0 at the run's end")


def judge_end(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.PARALLEL]
    if plan.helper() is None:
        return skipped(check, "no kit node is its neighbour to end the episode")
    if (why := did_not_run(record)) is not None:
        return skipped(check, f"the parallel run did not start: {why}")
    problem = exit_problem(record, "the end of the episode")
    if problem is not None:
        return failed(check, problem)
    ended = (record.result.ended_by or {}).get("tick", END_AT) if record.result else END_AT
    finals = record.observation.finals()
    if finals and finals[-1][3] != ended:
        return failed(check, f"its final progress says end_tick {finals[-1][3]}; the "
                             f"episode ended at tick {ended}")
    return passed(check, f"left at the episode's end (tick {ended}), exit 0")


def judge_stop(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.STOP]
    if (why := did_not_run(record)) is not None:
        return skipped(check, f"the stop run did not start: {why}")
    problem = exit_problem(record, "stop")
    if problem is None:
        problem, _ = final_problem(record, plan)
    if problem is not None:
        return failed(check, problem)
    return passed(check, "left on stop: final progress, done, exit 0")


def judge_stepped(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    from catbus.recording.verify import channel_sequences, first_difference

    one, two = records[Run.STEPPED], records[Run.AGAIN]
    for record in (one, two):
        if record.failed:
            return failed(check, f"the {record.run.value} run failed: {record.error}")
        if record.recording is None:
            return failed(check, f"the {record.run.value} run left no recording")
    difference = first_difference(one.recording, two.recording)
    if difference is not None:
        return failed(check, f"the two runs differ: {difference}")
    sequences = channel_sequences(one.recording)
    own = sum(len(sequences.get(topic, ())) for _, topic in plan.outputs)
    total = sum(len(v) for v in sequences.values())
    return passed(check, f"the two recordings are equal: {total} messages, {own} of them "
                         "the node's")


def judge_parallel(check: Check, name: str, plan: Plan, records: Records) -> Outcome:
    record = records[Run.PARALLEL]
    if (why := did_not_run(record)) is not None:
        return failed(check, why)
    data = [m for m in record.observation.data() if m.header.publisher == name]
    carried = next((m for m in data if m.header.through is not None), None)
    if carried is not None:
        return failed(check, f"its {carried.topic} of cycle {carried.header.tick} carried "
                             f"through {carried.header.through}; parallel data carries nil")
    steps = record.summary.get("steps")
    if record.failed:
        return failed(check, record.error)
    return passed(check, f"stepped {steps if steps is not None else '?'} cycle(s) over TCP, "
                         "data through nil")


RUN_JUDGES: dict[str, Callable[[Check, str, Plan, Records], Outcome]] = {
    "welcome": judge_welcome, "ready": judge_ready, "hellos": judge_hellos,
    "heartbeats": judge_heartbeats, "through": judge_through, "final": judge_final,
    "stats": judge_stats, "done": judge_done, "end": judge_end, "stop": judge_stop,
    "stepped": judge_stepped, "parallel": judge_parallel}

assert set(JOIN_JUDGES) | set(RUN_JUDGES) == set(BY_ID)

__all__ = ["judge", "announced", "final_problem", "stats_problem", "STATS_KEYS"]
