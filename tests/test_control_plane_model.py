"""A stateful property test of the control plane: random interleavings of joins, steps, deaths,
lost links, swaps, restarts, ends and stops (Hypothesis ``RuleBasedStateMachine``).

The machine plays every node process the way the runtime does -- it steps only while it holds
the right to (from ``start``, ``takeover`` or ``resume`` until it hands over, stops or dies), a
replacement reports ``swapped`` with its first step, a restarted process starts after the last
tick its readers have -- and checks after every step that:

* no two processes own one name, and only the plane's current process of a name steps it;
* no tick of a node is stepped twice (by two processes, or by one after a roll-back);
* once the run is stopping or its episode has ended, no swap is left neither done nor failed,
  and every tool that asked for one got exactly one answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from catbus.control import MemberState, RestartPolicy, SwitchKind
from catbus.wire import messages as msg
from tests.control_sim import Proc, Sim

pytestmark = pytest.mark.unit

NAMES = ("env", "robot")


@dataclass
class Model:
    """What one simulated process knows and does."""

    proc: Proc
    alive: bool = True
    link_up: bool = True
    welcomed: bool = False
    joining: str = ""
    ready_sent: bool = False
    stepping: bool = False        # holds the right to step
    next_tick: int = 0
    first_step_pending: bool = False   # a replacement or restart: report swapped with it
    retire_asked: bool = False
    handled: int = 0              # messages of its inbox already acted on
    stepped: list[int] = field(default_factory=list)


class ControlPlaneMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        policy = RestartPolicy("on-failure", 3, 0.0)
        self.sim = Sim(restart={"env": policy, "robot": policy}, deadline=5.0,
                       rejoin_timeout=3.0)
        self.models: dict[bytes, Model] = {}
        self.stepped: dict[str, set[int]] = {name: set() for name in NAMES}
        self.tools = 0
        for name in NAMES:
            proc = self.sim.process(name)
            self.models[proc.identity] = Model(proc)
            self.sim.feed(self._started(name, proc))
            self.sim.register(proc)
        self._react()
        for model in list(self.models.values()):
            self.sim.send(model.proc, msg.Ready())
            model.ready_sent = True
        self._react()

    def _started(self, name: str, proc: Proc):
        from catbus.control import ProcessStarted

        return ProcessStarted(name, proc.pid, self.sim.now)

    # -- the processes react to what the plane told them ----------------------------------------
    def _react(self) -> None:
        changed = True
        while changed:
            changed = False
            while self.sim.kills:   # the host kills at once what the plane asks it to
                pid = self.sim.kills.pop(0).pid
                for model in self._live():
                    if model.proc.pid == pid:
                        self._die(model, "was killed by signal 9")
                        changed = True
            for model in list(self.models.values()):
                inbox = model.proc.inbox
                while model.handled < len(inbox):
                    message = inbox[model.handled]
                    model.handled += 1
                    if model.alive and model.link_up:
                        self._on(model, message)
                        changed = True

    def _on(self, model: Model, message: msg.Message) -> None:
        name = model.proc.name
        if isinstance(message, msg.Welcome):
            model.welcomed, model.joining = True, message.joining
        elif isinstance(message, msg.Reject):
            self._die(model, "exited with code 1")
        elif isinstance(message, msg.Start):
            model.stepping = True
            if model.joining == "restart":
                model.next_tick = self._heard(name)
                model.first_step_pending = True
        elif isinstance(message, msg.Takeover):
            model.stepping, model.first_step_pending = True, True
            model.next_tick = message.tick if message.kind == "swap" else self._heard(name)
        elif isinstance(message, msg.Retire):
            model.retire_asked = True
        elif isinstance(message, msg.Resume):
            model.stepping = True
        elif isinstance(message, msg.Stop):
            self._die(model, "exited with code 0")

    def _heard(self, name: str) -> int:
        """Where a restarted process starts: after the last tick its readers have."""
        return max(self.stepped[name], default=-1) + 1

    def _die(self, model: Model, how: str) -> None:
        if not model.alive:
            return
        model.alive, model.stepping = False, False
        self.sim.exited(model.proc, how)

    def _live(self, name: str | None = None) -> list[Model]:
        return [m for m in self.models.values() if m.alive and
                (name is None or m.proc.name == name)]

    # -- rules ------------------------------------------------------------------------------------
    @rule(name=st.sampled_from(NAMES))
    def step(self, name: str) -> None:
        for model in self._live(name):
            if not (model.stepping and model.link_up) or self.sim.state.stopping:
                continue
            tick = model.next_tick
            if self.sim.state.end_tick is not None and tick > self.sim.state.end_tick:
                continue
            assert tick not in self.stepped[name], f"{name} tick {tick} stepped twice"
            self.stepped[name].add(tick)
            model.stepped.append(tick)
            model.next_tick += 1
            if model.first_step_pending:
                model.first_step_pending = False
                self.sim.send(model.proc, msg.Swapped(tick=tick))
            self.sim.beat(model.proc, tick)
        self._react()

    @rule(name=st.sampled_from(NAMES))
    def ask_swap(self, name: str) -> None:
        self.tools += 1
        self.sim.ask(f"tool-{self.tools}".encode(), msg.SwapRequest(node=name))
        self._react()

    def host_starts_processes(self) -> None:
        """The launcher carries out every StartProcess not carried out yet."""
        while self.sim.starts:
            order = self.sim.starts.pop(0)
            proc = self.sim.process(order.node)
            self.models[proc.identity] = Model(proc)
            self.sim.feed(self._started(order.node, proc))
        self._react()

    @rule(data=st.data())
    def a_process_moves_on(self, data) -> None:
        """One process takes its next step in the protocol: the host starts one it was asked
        for, a new one registers, a joining one gets ready, or one asked to retire hands
        over."""
        moves = []
        if self.sim.starts:
            moves.append(("start", None))
        moves += [("register", m) for m in self._live() if not m.welcomed and not m.proc.inbox]
        moves += [("ready", m) for m in self._live()
                  if m.welcomed and not m.ready_sent and m.link_up]
        moves += [("hand over", m) for m in self._live()
                  if m.retire_asked and m.stepping and m.link_up]
        if not moves:
            return
        move, model = data.draw(st.sampled_from(moves))
        if move == "start":
            self.host_starts_processes()
        elif move == "register":
            restart = self.sim.state.members[model.proc.name].state is MemberState.RESTARTING
            self.sim.register(model.proc, replace=not restart, restart=restart)
        elif move == "ready":
            model.ready_sent = True
            self.sim.send(model.proc, msg.Ready())
        else:
            model.retire_asked, model.stepping = False, False
            self.sim.send(model.proc, msg.Handover(tick=model.next_tick))
        self._react()

    @rule(data=st.data(), what=st.integers(0, 9))
    def something_breaks(self, data, what: int) -> None:
        """A process is killed (often), a link goes down or comes back, the episode ends, or
        the run is stopped (rarely)."""
        live = self._live()
        if what <= 2 and live:
            self._die(data.draw(st.sampled_from(live)), "was killed by signal 9")
        elif what <= 5:
            up = [m for m in live if m.link_up and m.welcomed]
            if up:
                model = data.draw(st.sampled_from(up))
                model.link_up = False
                self.sim.link_closed(model.proc)
        elif what <= 7:
            down = [m for m in live if not m.link_up]
            if down:
                model = data.draw(st.sampled_from(down))
                model.link_up = True
                self.sim.beat(model.proc, max(model.stepped, default=-1))
        elif what == 8:
            self.env_ends_the_episode()
        else:
            self.sim.stop("interrupted")
        self._react()

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0]))
    def time_passes(self, seconds: float) -> None:
        self.sim.advance(seconds)
        for model in self._live():   # live processes with a link heartbeat
            if model.link_up and model.welcomed:
                self.sim.beat(model.proc, max(model.stepped, default=-1))
        self._react()
        self.host_starts_processes()

    def env_ends_the_episode(self) -> None:
        member = self.sim.state.members["env"]
        current = self.models.get(member.identity) if member.identity else None
        if self.sim.state.end_tick is not None or current is None or not current.alive \
                or not current.link_up:
            return
        tick = max(self.stepped["env"], default=0)
        self.sim.send(current.proc, msg.Done(end="goal", end_tick=tick))

    def teardown(self) -> None:
        """What the example reached (``--hypothesis-show-statistics``): the exploration must
        get through whole swaps and restarts, not only refusals."""
        state = self.sim.state
        for record in state.swaps:
            event(f"{record['kind']} done")
        if state.swap_failures:
            event("a swap failed")
        if state.rejoins:
            event("a lost node rejoined")

    # -- invariants ---------------------------------------------------------------------------------
    @invariant()
    def one_owner_per_name(self) -> None:
        for name in NAMES:
            assert len(self.sim.owners(name)) <= 1
            holders = [m for m in self._live(name) if m.stepping]
            assert len(holders) <= 1, f"two processes step {name}"
            for model in holders:
                assert self.sim.current(name) == model.proc.identity, \
                    f"{name} is stepped by a process the plane does not own it with"

    @invariant()
    def no_swap_left_open_after_the_end(self) -> None:
        state = self.sim.state
        if state.stopping is not None or state.end_tick is not None:
            assert not [s for s in state.switches.values() if s.kind is SwitchKind.SWAP]
        for tool, messages in self.sim.tools.items():
            replies = [m for m in messages if isinstance(m, msg.SwapReply)]
            assert len(replies) <= 1, f"{tool!r} answered twice"
            if (state.stopping is not None or state.end_tick is not None) and \
                    tool.startswith(b"tool-"):
                assert len(replies) == 1, f"{tool!r} never answered"


ControlPlaneMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_control_plane_swap_restart_lost_takeover_interleavings = ControlPlaneMachine.TestCase
