"""Telling processes apart and tying them to their parent, without starting any: a run's launcher
by pid *and* start time (``catbus.supervise.rundir``), and the parent-death signal
(``catbus.runtime.signals.die_with_parent``). Folders of real dead and live runs are
tests/test_bus.py's."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from catbus.runtime import signals
from catbus.supervise.rundir import START_TOLERANCE, process_start_time, same_process

pytestmark = pytest.mark.unit


def test_the_launcher_itself_is_the_same_process():
    assert same_process(1000.0, 1000.0)
    # Two readings of one start time differ by rounding (and on Linux by a clock set between
    # psutil's two readings): still the same process.
    assert same_process(1000.0, 1000.0 + START_TOLERANCE / 2)
    assert same_process(1000.0, 1000.0 - START_TOLERANCE / 2)


def test_a_process_that_started_after_the_launcher_took_over_its_pid():
    assert not same_process(1000.0, 1000.0 + 2 * START_TOLERANCE)
    assert not same_process(1000.0, 5000.0)


def test_no_process_at_the_pid_is_no_launcher():
    assert not same_process(1000.0, None)


def test_an_earlier_start_is_not_pid_reuse():
    """A process that took over a pid started after its first owner; only a clock that moved
    back makes the launcher's own start read earlier, and that keeps it alive."""
    assert same_process(1000.0, 10.0)


def test_this_process_has_a_steady_start_time_and_a_free_pid_has_none():
    mine = process_start_time(os.getpid())
    assert mine is not None and same_process(mine, process_start_time(os.getpid()))
    assert process_start_time(2**31 - 1) is None   # above any pid_max


def test_die_with_parent_asks_nothing_where_there_is_no_prctl(monkeypatch: pytest.MonkeyPatch):
    """Not Linux: nothing is asked (a real call would set this very test process's parent-death
    signal), and the caller learns so."""
    monkeypatch.setattr(sys, "platform", "darwin")
    assert signals.die_with_parent(signal.SIGTERM) is False


def test_a_noted_signal_is_raised_again_until_the_node_is_finishing():
    pending = signals.PendingSignal()
    pending.raise_if_pending()   # nothing noted: nothing raised
    pending.note(signal.SIGTERM)
    for _ in range(2):   # every poll raises it again, however often it was swallowed
        with pytest.raises(signals.Interrupted) as raised:
            pending.raise_if_pending()
        assert raised.value.exit_code == 128 + signal.SIGTERM
    pending.clear()
    pending.raise_if_pending()


def test_ctrl_c_within_noted_ctrl_c_is_noted_not_raised_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with signals.noted_ctrl_c() as noted:
        os.kill(os.getpid(), signal.SIGINT)   # handled before the next line: no exception
        assert noted == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is before
