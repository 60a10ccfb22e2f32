"""The control plane's protocols, event by event, without a process or a socket: joins, swaps,
restarts, lost links and rejoins, liveness and the end of the run (``catbus.control``).

Each test drives :class:`tests.control_sim.Sim` through one path -- the failures users met
included -- and checks what the plane sends, asks its host and reports.
"""

from __future__ import annotations

import pytest

from catbus.control import MemberState, NoticeKind, Phase, RestartPolicy, ScheduledSwap
from catbus.control.liveness import LOST_AFTER
from catbus.wire import messages as msg
from tests.control_sim import Sim

pytestmark = pytest.mark.unit

ON_FAILURE = RestartPolicy("on-failure", max_restarts=2, backoff=0.5)


def running(**options) -> tuple[Sim, dict]:
    sim = Sim(**options)
    return sim, sim.start_run()


def swap_reply(sim: Sim, tool: bytes = b"tool") -> msg.SwapReply | None:
    replies = [m for m in sim.tools.get(tool, []) if isinstance(m, msg.SwapReply)]
    assert len(replies) <= 1, replies
    return replies[0] if replies else None


# -- joining and starting -----------------------------------------------------------------------------
def test_the_run_starts_once_every_node_is_ready_not_before():
    sim = Sim()
    env, robot = sim.process("env"), sim.process("robot")
    sim.register(env)
    sim.register(robot)
    sim.send(env, msg.Ready())
    assert not sim.state.started and not env.got(msg.Start)
    sim.send(robot, msg.Ready())
    assert sim.state.started
    assert env.last(msg.Start).delay == robot.last(msg.Start).delay == 0.05
    assert env.last(msg.Welcome).incarnation == 1 and env.got(msg.Graph)


def test_a_second_process_of_a_running_name_is_rejected_unless_it_replaces():
    sim, procs = running()
    intruder = sim.register(sim.process("robot"))
    assert "already running" in intruder.last(msg.Reject).reason
    assert "--replace" in intruder.last(msg.Reject).reason
    assert sim.owners("robot") == [procs["robot"].identity]


# -- swaps --------------------------------------------------------------------------------------------
def test_swap_goes_through_retire_handover_takeover_and_swapped():
    sim, procs = running()
    old = procs["robot"]
    new = sim.swap_in("robot")
    assert new.last(msg.Welcome).joining == "swap"
    assert old.last(msg.Retire) is not None, "the old process is asked to hand over"
    assert sim.current("robot") == old.identity, "no takeover before the handover"
    sim.send(old, msg.Handover(tick=42, snapshot=b"state", seq={"robot/action": 41}))
    takeover = new.last(msg.Takeover)
    assert (takeover.tick, takeover.snapshot, takeover.kind) == (42, b"state", "swap")
    assert sim.current("robot") == new.identity and not old.got(msg.Stop)
    sim.send(new, msg.Swapped(tick=42, restored=True))
    assert old.last(msg.Stop) is not None, "the old process stops after the first step"
    reply = swap_reply(sim)
    assert reply.ok and reply.tick == 42 and reply.state == "restored"
    [record] = sim.state.swaps
    assert (record["old"]["incarnation"], record["new"]["incarnation"]) == (1, 2)
    assert sim.state.switches == {} and sim.owners("robot") == [new.identity]


def test_swap_without_a_class_starts_the_launch_files_class_not_the_registered_text():
    sim = Sim()
    env, robot = sim.process("env"), sim.process("robot")
    sim.register(env)
    sim.register(robot, cls="rawnode.py")   # a node in another language says what it likes
    sim.send(env, msg.Ready())
    sim.send(robot, msg.Ready())
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    assert sim.starts[-1].cls == "nodes.robot:Node"


def test_swap_before_the_run_starts_is_refused_saying_how_to_wait():
    sim = Sim()
    sim.register(sim.process("env"))
    [reply] = sim.ask(b"tool", msg.SwapRequest(node="env"))
    assert not reply.ok and "has not started yet" in reply.message and "--wait" in reply.message
    assert sim.starts == []


def test_second_swap_of_a_node_being_swapped_is_refused_with_the_reason():
    sim, procs = running()
    sim.ask(b"first", msg.SwapRequest(node="robot"))
    [reply] = sim.ask(b"second", msg.SwapRequest(node="robot"))
    assert not reply.ok and "being swapped already" in reply.message
    assert len(sim.starts) == 1


def test_swaps_of_two_nodes_run_at_the_same_time():
    sim, procs = running()
    new_robot = sim.swap_in("robot", requester=b"t1")
    new_env = sim.swap_in("env", requester=b"t2")
    sim.send(procs["robot"], msg.Handover(tick=10))
    sim.send(procs["env"], msg.Handover(tick=10))
    sim.send(new_robot, msg.Swapped(tick=10))
    sim.send(new_env, msg.Swapped(tick=10))
    assert swap_reply(sim, b"t1").ok and swap_reply(sim, b"t2").ok
    assert sim.owners("robot") == [new_robot.identity]
    assert sim.owners("env") == [new_env.identity]


def test_swap_replacement_killed_before_registering_fails_the_swap_at_once():
    sim, procs = running()
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    new = sim.spawned("robot")
    sim.exited(new)
    reply = swap_reply(sim)
    assert not reply.ok and "killed by signal 9 before registering" in reply.message
    assert "the old process goes on" in reply.message
    assert sim.current("robot") == procs["robot"].identity and sim.state.switches == {}
    assert sim.state.swap_failures and sim.noticed(NoticeKind.SWAP_FAILED)


def test_swap_refused_by_the_hosts_check_starts_nothing_and_fails():
    sim, procs = running()
    sim.ask(b"tool", msg.SwapRequest(node="robot", cls="nope:Nope"))
    sim.refused("robot", "swap: class: no module named 'nope'")
    reply = swap_reply(sim)
    assert not reply.ok and "no module named 'nope'" in reply.message
    assert not procs["robot"].got(msg.Retire)


def test_swap_replacement_that_does_not_fit_is_rejected_and_the_swap_fails():
    sim, procs = running()
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    new = sim.spawned("robot")
    sim.send(new, msg.Register(name="robot", endpoint="ipc://x", pid=new.pid, outputs=[],
                               inputs=[], protocol=4, replace=True, cls="x:Other"))
    assert "does not fit" in new.last(msg.Reject).reason
    assert not swap_reply(sim).ok


def test_swap_replacement_failing_in_setup_leaves_the_old_process_untouched():
    sim, procs = running()
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    new = sim.register(sim.spawned("robot"), replace=True)
    sim.send(new, msg.Error(where="setup", message="RuntimeError: cannot start"))
    reply = swap_reply(sim)
    assert not reply.ok and "cannot start" in reply.message
    assert new.last(msg.Stop) is not None
    assert not procs["robot"].got(msg.Retire)
    # Told anyway, so that it records the failed swap; it had nothing to resume from.
    assert "cannot start" in procs["robot"].last(msg.Resume).reason


def test_swap_replacement_dying_after_the_handover_resumes_the_old_process():
    sim, procs = running()
    old = procs["robot"]
    new = sim.swap_in("robot")
    sim.ask(b"tool", msg.GraphQuery())
    sim.exited(new)   # dies between ready and takeover: the handover is not sent on
    sim.send(old, msg.Handover(tick=7))
    # The handover came after the failure: nobody asked for it any more.
    assert old.last(msg.Resume) is not None
    assert sim.current("robot") == old.identity


def test_swap_replacement_dying_after_takeover_before_its_first_step_rolls_back():
    sim, procs = running()
    old = procs["robot"]
    new = sim.swap_in("robot")
    sim.send(old, msg.Handover(tick=20))
    assert new.last(msg.Takeover).tick == 20
    sim.send(new, msg.Error(where="step", message="RuntimeError: first step"))
    assert old.last(msg.Resume) is not None, "the old process goes on at the same tick"
    assert sim.current("robot") == old.identity and sim.owners("robot") == [old.identity]
    assert not swap_reply(sim).ok and new.last(msg.Stop) is not None
    assert sim.state.members["robot"].state is MemberState.RUNNING


def test_swap_replacement_that_never_gets_ready_fails_naming_what_it_waited_for():
    sim, procs = running(deadline=10.0)
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    new = sim.register(sim.spawned("robot"), replace=True)
    for _ in range(30):   # alive and heartbeating, but a neighbour never answers its hello
        sim.beat(new, -1, "joining: waiting for hello answers from env")
        sim.advance(0.5)
        sim.beat(procs["env"], 5)
        sim.beat(procs["robot"], 5)
    reply = swap_reply(sim)
    assert not reply.ok and "waiting for hello answers from env" in reply.message
    assert "10 s" in reply.message


def test_pending_swap_shows_in_the_graph_for_node_list():
    sim, procs = running()
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    new = sim.register(sim.spawned("robot"), replace=True)
    sim.beat(new, -1, "joining: waiting for hello answers from env")
    [graph] = [m for m in sim.ask(b"cli", msg.GraphQuery()) if isinstance(m, msg.Graph)]
    robot = next(n for n in graph.nodes if n["name"] == "robot")
    assert "swap to nodes.robot:Node" in robot["pending"]
    assert "waiting for hello answers from env" in robot["pending"]
    assert robot["standby"] == f"ipc://robot-{new.pid}"


def test_swap_replacement_silent_for_the_deadline_fails_the_swap():
    sim, procs = running(deadline=5.0)
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    sim.register(sim.spawned("robot"), replace=True)
    for _ in range(14):
        sim.advance(0.5)
        sim.beat(procs["env"], 1)
        sim.beat(procs["robot"], 1)
    assert "silent for 5 s" in swap_reply(sim).message


def test_swap_old_process_killed_before_handover_the_replacement_takes_over_as_a_restart():
    sim, procs = running()
    old = procs["robot"]
    sim.beat(old, 30)
    new = sim.swap_in("robot")
    sim.exited(old)   # killed while its replacement was ready, before the handover
    takeover = new.last(msg.Takeover)
    assert takeover.kind == "restart" and takeover.tick == 31
    assert sim.current("robot") == new.identity
    sim.send(new, msg.Swapped(tick=31))
    reply = swap_reply(sim)
    assert reply.ok and "died" in reply.message
    assert sim.state.spliced == [{"node": "robot", "tick": 31, "kind": "swap", "state": "fresh"}]
    assert not sim.noticed(NoticeKind.FAILED)


def test_swap_old_process_killed_while_the_replacement_joins_it_takes_over_once_ready():
    sim, procs = running()
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    new = sim.register(sim.spawned("robot"), replace=True)
    sim.exited(procs["robot"])
    assert sim.owners("robot") == [] and not new.got(msg.Takeover)
    sim.send(new, msg.Ready())
    assert new.last(msg.Takeover).kind == "restart"


def test_swap_old_process_killed_after_handover_takeover_uses_the_handover():
    sim, procs = running()
    old = procs["robot"]
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    new = sim.register(sim.spawned("robot"), replace=True)
    sim.send(old, msg.Handover(tick=9, snapshot=b"s"))
    sim.exited(old)
    sim.send(new, msg.Ready())
    takeover = new.last(msg.Takeover)
    assert (takeover.kind, takeover.tick, takeover.snapshot) == ("swap", 9, b"s")
    sim.send(new, msg.Swapped(tick=9, restored=True))
    assert swap_reply(sim).ok and sim.state.spliced == []


def test_swap_refused_while_the_nodes_link_is_lost():
    sim, procs = running()
    sim.link_closed(procs["robot"])
    [reply] = sim.ask(b"tool", msg.SwapRequest(node="robot"))
    assert not reply.ok and "lost its link" in reply.message


def test_lost_link_during_swap_retire_is_sent_again_on_rejoin():
    sim, procs = running()
    old = procs["robot"]
    sim.swap_in("robot")
    assert len(old.got(msg.Retire)) == 1
    sim.link_closed(old)
    sim.advance(LOST_AFTER + 0.5)
    assert sim.noticed(NoticeKind.LOST)
    sim.beat(old, 12)   # back: the retire sent while it was away may be lost
    assert len(old.got(msg.Retire)) == 2 and sim.noticed(NoticeKind.BACK)


def test_swap_in_progress_fails_when_the_episode_ends_and_the_old_process_resumes():
    sim, procs = running(swaps=[ScheduledSwap("robot", "nodes.robot:Node", {}, tick=50)])
    old = procs["robot"]
    sim.send(old, msg.Handover(tick=50))   # handed over; its replacement is still joining
    new = sim.register(sim.spawned("robot"), replace=True)
    sim.send(procs["env"], msg.Done(end="goal reached", end_tick=49))
    assert old.last(msg.Resume) is not None and old.last(msg.End).tick == 49
    assert new.last(msg.Stop) is not None and sim.state.switches == {}
    [failure] = sim.state.swap_failures
    assert "episode ended" in failure["message"]


def test_swap_asked_by_a_tool_fails_when_the_episode_ends_and_the_tool_is_told():
    sim, procs = running()
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    sim.send(procs["env"], msg.Done(end="goal reached", end_tick=49))
    reply = swap_reply(sim)
    assert not reply.ok and "episode ended" in reply.message
    assert "episode ended" in procs["robot"].last(msg.Resume).reason


def test_swap_in_progress_fails_when_the_run_is_stopped_and_its_requester_is_told():
    sim, procs = running()
    new = sim.swap_in("robot")
    sim.stop("interrupted (Ctrl-C)")
    assert "stopping" in swap_reply(sim).message
    assert new.last(msg.Stop) is not None and procs["robot"].last(msg.Stop) is not None


def test_swap_requester_gets_heartbeats_until_the_answer():
    sim, procs = running()
    sim.ask(b"tool", msg.SwapRequest(node="robot"))
    sim.advance(2.0)
    beats = [m for m in sim.tools[b"tool"] if isinstance(m, msg.Heartbeat)]
    assert len(beats) >= 3
    sim.exited(sim.spawned("robot"))
    count = len(sim.tools[b"tool"])
    sim.advance(2.0)
    assert len(sim.tools[b"tool"]) == count, "no heartbeat after the answer"


def test_scheduled_swap_handover_at_its_tick_orders_the_replacement():
    sim, procs = running(swaps=[ScheduledSwap("robot", "nodes.other:Other", {"k": 1},
                                              tick=150)])
    assert procs["robot"].last(msg.Welcome).retire_at == 150
    sim.send(procs["robot"], msg.Handover(tick=150))
    [start] = sim.starts
    assert (start.cls, start.params) == ("nodes.other:Other", {"k": 1})
    new = sim.register(sim.spawned("robot"), replace=True, cls="nodes.other:Other")
    assert new.last(msg.Welcome).overrides == {"k": 1}
    assert new.last(msg.Welcome).filter_params
    sim.send(new, msg.Ready())
    assert new.last(msg.Takeover).tick == 150


def test_handover_nobody_asked_for_is_answered_with_resume_not_retire():
    sim, procs = running()
    sim.send(procs["robot"], msg.Handover(tick=3))
    assert procs["robot"].last(msg.Resume).reason == "", "nothing failed: nothing to record"
    assert sim.starts == []


def test_swap_by_hand_with_replace_needs_no_order():
    sim, procs = running()
    new = sim.register(sim.process("robot"), replace=True, params={"gain": 3})
    assert new.last(msg.Welcome).overrides == {"gain": 3}
    sim.send(new, msg.Ready())
    sim.send(procs["robot"], msg.Handover(tick=5))
    sim.send(new, msg.Swapped(tick=5))
    assert sim.owners("robot") == [new.identity] and sim.state.swaps


def test_timed_swap_in_parallel_is_ordered_when_its_wall_time_comes():
    sim, procs = running(mode="parallel", swaps=[ScheduledSwap("robot", "nodes.robot:Node", {},
                                                               at=2.0)])
    sim.advance(1.5)
    assert sim.starts == []
    sim.beat(procs["env"], 1)
    sim.beat(procs["robot"], 1)
    sim.advance(1.0)
    assert [s.node for s in sim.starts] == ["robot"]


def test_swap_of_the_recorder_is_refused():
    sim, procs = running(nodes=("env", "robot", "recorder"))
    [reply] = sim.ask(b"tool", msg.SwapRequest(node="recorder"))
    assert "reads every topic" in reply.message


def test_swap_on_an_open_bus_without_launcher_is_refused_with_the_manual_command():
    sim, procs = running(can_spawn=False)
    [reply] = sim.ask(b"tool", msg.SwapRequest(node="robot"))
    assert "--replace" in reply.message


# -- restarts -------------------------------------------------------------------------------------
def test_restart_after_a_kill_waits_the_backoff_then_starts_a_new_process():
    sim, procs = running(restart={"robot": ON_FAILURE})
    sim.beat(procs["robot"], 40)
    sim.exited(procs["robot"])
    member = sim.state.members["robot"]
    assert member.state is MemberState.RESTARTING and member.process is None
    assert sim.noticed(NoticeKind.RESTARTING) and not sim.noticed(NoticeKind.FAILED)
    assert sim.starts == []
    sim.advance(0.5)
    [start] = sim.starts
    assert start.restart and start.cls == "nodes.robot:Node"
    new = sim.register(sim.spawned("robot", restart=True), restart=True)
    assert new.last(msg.Welcome).joining == "restart" and new.last(msg.Welcome).incarnation == 2
    sim.send(new, msg.Ready())
    assert new.last(msg.Start).tick == 41
    sim.send(new, msg.Swapped(tick=41))
    [record] = sim.state.swaps
    assert record["kind"] == "restart" and record["state"] == "fresh"
    assert sim.state.switches == {} and member.state is MemberState.RUNNING


def test_restart_fresh_marks_the_run_spliced():
    sim, procs = running(restart={"env": ON_FAILURE})
    sim.beat(procs["env"], 2139)
    sim.exited(procs["env"])
    sim.advance(0.5)
    new = sim.register(sim.spawned("env", restart=True), restart=True)
    sim.send(new, msg.Ready())
    sim.send(new, msg.Swapped(tick=2140))
    assert sim.state.spliced == [{"node": "env", "tick": 2140, "kind": "restart",
                                  "state": "fresh"}]
    [notice] = sim.noticed(NoticeKind.SPLICED)
    assert notice.message == "env restarted fresh at tick 2140"


def test_neighbours_restarted_together_mark_the_run_spliced_even_from_checkpoints():
    """env and robot (each reads the other) die at once: each restarted process goes on from
    where its readers stopped hearing it, but its reader is restarting too and has heard
    nothing. That once went on silently with a wrong episode; now the run says so."""
    both = {"env": ON_FAILURE, "robot": ON_FAILURE}
    sim, procs = running(restart=both, nodes=("env", "robot", "recorder"))
    sim.beat(procs["env"], 200)
    sim.beat(procs["robot"], 200)
    sim.exited(procs["env"])
    sim.exited(procs["robot"])
    sim.advance(0.5)
    for name in ("env", "robot"):
        new = sim.register(sim.spawned(name, restart=True), restart=True)
        sim.send(new, msg.Ready())
        sim.send(new, msg.Swapped(tick=201, restored=True, checkpoint=150))
    assert [(e["node"], e["together"]) for e in sim.state.spliced] == \
        [("env", ["robot"]), ("robot", ["env"])]
    notices = [n.message for n in sim.noticed(NoticeKind.SPLICED)]
    assert notices[0] == "env restarted together with robot checkpoint (tick 150) at tick 201"


def test_a_restart_alone_from_a_checkpoint_is_no_splice():
    sim, procs = running(restart={"env": ON_FAILURE}, nodes=("env", "robot", "recorder"))
    sim.beat(procs["env"], 200)
    sim.exited(procs["env"])
    sim.advance(0.5)
    new = sim.register(sim.spawned("env", restart=True), restart=True)
    sim.send(new, msg.Ready())
    sim.send(new, msg.Swapped(tick=201, restored=True, checkpoint=150))
    assert sim.state.spliced == [] and "together" not in sim.state.swaps[0]


def test_restart_of_a_stuck_node_kills_it_first_then_waits_for_its_exit():
    sim, procs = running(restart={"robot": ON_FAILURE}, deadline=3.0)
    for _ in range(8):
        sim.advance(0.5)
        sim.beat(procs["env"], 5)
    [kill] = sim.kills
    assert kill.pid == procs["robot"].pid
    assert sim.state.switches["robot"].phase is Phase.WAITING_EXIT
    sim.advance(2.0)
    assert sim.starts == [], "not before the stuck process is gone"
    sim.exited(procs["robot"])
    sim.advance(0.5)
    assert [s.restart for s in sim.starts] == [True]


def test_restart_beyond_max_restarts_fails_the_run():
    sim, procs = running(restart={"robot": RestartPolicy("on-failure", 1, 0.0)})
    sim.exited(procs["robot"])
    sim.tick()
    new = sim.register(sim.spawned("robot", restart=True), restart=True)
    sim.send(new, msg.Ready())
    sim.exited(new)
    [failed] = sim.noticed(NoticeKind.FAILED)
    assert failed.node == "robot" and "killed by signal 9" in failed.message


def test_restart_new_process_dying_before_it_registers_fails_the_run_naming_both():
    sim, procs = running(restart={"robot": ON_FAILURE})
    sim.exited(procs["robot"], "exited with code 1")
    sim.advance(0.5)
    sim.exited(sim.spawned("robot", restart=True), "exited with code 2")
    [failed] = sim.noticed(NoticeKind.FAILED)
    assert "exited with code 2 before registering" in failed.message
    assert "exited with code 1" in failed.message


def test_restart_is_not_applied_after_the_episode_ended():
    sim, procs = running(restart={"robot": ON_FAILURE})
    sim.send(procs["env"], msg.Done(end="done", end_tick=10))
    sim.exited(procs["robot"])
    assert sim.noticed(NoticeKind.FAILED) and sim.starts == []


def test_restart_in_progress_refuses_a_swap():
    sim, procs = running(restart={"robot": ON_FAILURE})
    sim.exited(procs["robot"])
    [reply] = sim.ask(b"tool", msg.SwapRequest(node="robot"))
    assert "being restarted" in reply.message


def test_restart_of_a_remote_node_waits_for_its_host_to_register_it_again():
    sim, procs = running(restart={"robot": ON_FAILURE}, remote=("robot",))
    sim.send(procs["robot"], msg.Error(where="step", message="ValueError: boom"))
    assert sim.kills == [] and sim.starts == [], "its own host restarts it, not ours"
    new = sim.register(sim.process("robot"), restart=True)
    assert new.last(msg.Welcome).joining == "restart"
    sim.send(new, msg.Ready())
    assert new.last(msg.Start) is not None and not sim.noticed(NoticeKind.FAILED)


def test_restart_by_its_host_while_the_old_link_still_looks_up_takes_the_name():
    sim, procs = running(restart={"robot": ON_FAILURE}, remote=("robot",))
    new = sim.register(sim.process("robot"), restart=True)
    assert procs["robot"].last(msg.Stop) is not None, "no two processes own one name"
    assert sim.owners("robot") == [new.identity]


def test_restart_during_a_swap_after_takeover_uses_the_restart_policy():
    sim, procs = running(restart={"robot": ON_FAILURE})
    old = procs["robot"]
    sim.beat(old, 8)
    new = sim.swap_in("robot")
    sim.exited(old)          # the old process died before handing over ...
    sim.exited(new)          # ... and its replacement after taking over
    assert not swap_reply(sim).ok
    assert sim.state.members["robot"].state is MemberState.RESTARTING
    sim.advance(0.5)
    assert [s.restart for s in sim.starts] == [False, True]


# -- lost links and liveness ------------------------------------------------------------------------
def test_lost_after_the_link_closes_and_silence_then_rejoin_is_recorded():
    sim, procs = running()
    robot = procs["robot"]
    sim.beat(robot, 3)
    sim.link_closed(robot)
    sim.advance(0.5)
    assert not sim.noticed(NoticeKind.LOST), "a closed link the node talks past is no loss"
    sim.advance(2.0)
    [lost] = sim.noticed(NoticeKind.LOST)
    assert "waiting up to 30 s" in lost.message
    sim.beat(robot, 3)
    [record] = sim.state.rejoins
    assert record["node"] == "robot" and record["down_s"] >= 2.0
    assert robot.last(msg.Rejoined) is not None


def test_lost_too_long_fails_the_node_naming_the_rejoin_timeout():
    sim, procs = running(rejoin_timeout=4.0)
    sim.link_closed(procs["robot"])
    for _ in range(10):
        sim.advance(0.5)
        sim.beat(procs["env"], 1)
    [failed] = sim.noticed(NoticeKind.FAILED)
    assert failed.node == "robot" and "did not come back within 4 s" in failed.message


def test_lost_node_with_a_restart_policy_is_killed_and_restarted_after_the_rejoin_timeout():
    sim, procs = running(rejoin_timeout=2.0, restart={"robot": ON_FAILURE})
    sim.link_closed(procs["robot"])
    for _ in range(6):
        sim.advance(0.5)
        sim.beat(procs["env"], 1)
    assert [k.pid for k in sim.kills] == [procs["robot"].pid]
    sim.exited(procs["robot"])
    sim.advance(0.5)
    assert sim.starts and sim.starts[0].restart


def test_lost_plain_register_of_a_lost_node_is_a_restart_by_hand():
    sim, procs = running()
    sim.link_closed(procs["robot"])
    sim.advance(LOST_AFTER + 0.5)
    again = sim.register(sim.process("robot"))
    assert again.last(msg.Welcome).joining == "restart"
    assert sim.owners("robot") == [again.identity]


def test_lost_node_is_not_blamed_for_a_parallel_runs_end_only_the_rejoin_timeout_is():
    sim, procs = running(mode="parallel", duration=2.0, rejoin_timeout=20.0)
    sim.link_closed(procs["robot"])
    sim.advance(2.5)
    sim.send(procs["env"], msg.Done())   # the run's 2 s are over: env finishes
    sim.advance(8.0)                     # the end grace is long over too
    assert not sim.noticed(NoticeKind.FAILED)
    for _ in range(24):
        sim.advance(0.5)
    [failed] = sim.noticed(NoticeKind.FAILED)
    assert "did not come back within 20 s" in failed.message


def test_a_node_whose_link_comes_back_after_a_parallel_runs_end_gets_the_end_grace_from_then():
    """Frozen (SIGSTOP) past the run's end, a node hears of the end only once it is back: the
    grace to finish counts from its return, not from the end it could not see."""
    sim, procs = running(mode="parallel", duration=2.0, rejoin_timeout=30.0)
    sim.link_closed(procs["robot"])
    sim.advance(6.5)                    # the run's 2 s are over, and the end grace too
    sim.send(procs["env"], msg.Done())
    sim.beat(procs["robot"], 1, "stepping tick 997")   # back, its last state from before
    for _ in range(8):                  # 4 s: within the grace, counted from its return
        sim.advance(0.5)
        sim.beat(procs["robot"], 1, "stepping tick 997")
    assert not sim.noticed(NoticeKind.FAILED)
    for _ in range(4):
        sim.advance(0.5)
        sim.beat(procs["robot"], 1, "stepping tick 997")
    [failed] = sim.noticed(NoticeKind.FAILED)
    assert failed.node == "robot" and "alive but not finishing" in failed.message


def test_lost_link_not_involved_at_a_parallel_end_grace_the_stuck_node_is_named_first():
    sim, procs = running(mode="parallel", duration=2.0)
    for _ in range(20):
        sim.advance(0.5)
        sim.beat(procs["robot"], 1)
    silent, waiting = sim.noticed(NoticeKind.FAILED)
    assert silent.node == "env" and "stuck in a step" in silent.message
    assert waiting.node == "robot" and "waiting for env" in waiting.message


def test_stuck_node_with_its_link_up_fails_after_the_deadline():
    sim, procs = running(deadline=3.0)
    for _ in range(8):
        sim.advance(0.5)
        sim.beat(procs["env"], 1)
    [failed] = sim.noticed(NoticeKind.FAILED)
    assert failed.node == "robot" and "no heartbeat for 3 s" in failed.message


def test_lost_link_of_a_swaps_old_process_after_takeover_is_no_loss():
    sim, procs = running()
    old = procs["robot"]
    new = sim.swap_in("robot")
    sim.send(old, msg.Handover(tick=4))
    sim.link_closed(old)
    sim.advance(3.0)
    sim.send(new, msg.Swapped(tick=4))
    assert not sim.noticed(NoticeKind.LOST) and swap_reply(sim).ok


def test_stepped_stall_is_reported_once_naming_the_node_behind_but_not_while_a_takeover_runs():
    sim, procs = running(deadline=3.0)
    sim.swap_in("robot")
    for _ in range(10):
        sim.advance(0.5)
        sim.beat(procs["env"], 7)
        sim.beat(procs["robot"], 6)
    assert not sim.noticed(NoticeKind.FAILED), "a swap in progress: the lockstep waits"
    sim.stop("x")
    sim2, procs2 = running(deadline=3.0)
    for _ in range(12):
        sim2.advance(0.5)
        sim2.beat(procs2["env"], 7, "waiting for tick 8")
        sim2.beat(procs2["robot"], 6, "waiting for tick 7")
    [failed] = sim2.noticed(NoticeKind.FAILED)
    assert "stalled" in failed.message


def test_end_of_episode_is_relayed_to_everyone_else_once():
    sim, procs = running(nodes=("env", "robot", "recorder"))
    sim.send(procs["env"], msg.Done(end="goal", end_tick=99))
    sim.send(procs["robot"], msg.Done(end="other", end_tick=120))
    assert procs["robot"].last(msg.End).tick == 99
    assert len(procs["recorder"].got(msg.End)) == 1
    assert sim.state.end_reason == "goal"


def test_a_batch_of_registrations_sends_each_process_one_graph_not_one_per_registration():
    """An open bus (catbus bus): 500 nodes registering in one burst. The graph goes out once
    per batch (the registry flushes after each poll), so each process gets one, not one per
    later registration (500 registrations took 65 s when that grew as the square)."""
    from catbus.control import ControlPlane, Received, RunConfig

    plane = ControlPlane(RunConfig())
    graphs: dict[bytes, int] = {}
    for n in range(500):
        identity = f"node-{n}".encode()
        for item in plane.handle(Received(identity, msg.Register(
                name=f"n{n}", endpoint=f"ipc://n{n}", protocol=4), 1.0)):
            assert not isinstance(getattr(item, "message", None), msg.Graph)
    for item in plane.flush():
        graphs[item.identity] = graphs.get(item.identity, 0) + 1
    assert len(graphs) == 500 and set(graphs.values()) == {1}
    assert plane.flush() == [], "nothing changed since"


def test_a_process_ended_by_a_signal_after_saying_done_fails_the_run():
    from catbus.control import ProcessExited

    sim, procs = running()
    sim.send(procs["robot"], msg.Done())
    sim.feed(ProcessExited(procs["robot"].pid, "was killed by signal 6", sim.now, sim.now, 6))
    [failed] = sim.noticed(NoticeKind.FAILED)
    assert failed.node == "robot" and "after it said done" in failed.message
    sim.send(procs["env"], msg.Done())
    sim.feed(ProcessExited(procs["env"].pid, "exited with code 0", sim.now, sim.now, 0))
    assert len(sim.noticed(NoticeKind.FAILED)) == 1, "a clean exit after done is no failure"


def test_a_first_process_that_exits_before_registering_fails_the_run_at_once():
    from catbus.control import ProcessExited, ProcessStarted

    sim = Sim()
    proc = sim.process("robot")
    sim.feed(ProcessStarted("robot", proc.pid, sim.now))
    sim.feed(ProcessExited(proc.pid, "exited with code 1", sim.now, sim.now, None))
    [failed] = sim.noticed(NoticeKind.FAILED)
    assert failed.node == "robot" and "before registering" in failed.message


def test_an_end_of_episode_before_ticks_the_node_already_stepped_is_refused_and_counted():
    sim, procs = running(nodes=("env", "robot", "recorder"))
    sim.beat(procs["robot"], 100)
    sim.send(procs["robot"], msg.Done(end="forged", end_tick=5, stats={"tick": 100}))
    assert sim.state.end_tick is None and sim.state.refused == 1
    assert not procs["env"].got(msg.End)
    sim.send(procs["env"], msg.Done(end="goal", end_tick=120, stats={"tick": 120}))
    assert (sim.state.end_tick, sim.state.ended_by, sim.state.end_reason) == (120, "env", "goal")


def test_only_a_recorder_is_told_the_launch_files_text():
    sim = Sim(nodes=("env", "robot", "recorder"))
    sim.config.run_info["launch"] = "nodes: {env: {class: secret.module:Env}}"
    procs = sim.start_run()
    assert "launch" not in procs["robot"].last(msg.Welcome).run_info
    assert "launch" not in procs["env"].last(msg.Welcome).run_info
    assert procs["recorder"].last(msg.Welcome).run_info["launch"].startswith("nodes:")
