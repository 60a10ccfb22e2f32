"""Recorder -> MCAP -> Recording round trips, truncated files, the flat_evade evaluator and plot.

The recorder is driven directly, the way the runtime drives it (bind, setup, on_raw in write
order, close), with frames built by catbus.wire.codec, so these tests need no bus and run in well
under a second each (the SIGKILL test starts one Python process).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catbus.wire import codec
from catbus.cli.recording import cmd_eval, cmd_plot
from catbus.errors import CatbusError
from catbus.recording.evaluate import evaluate_file, format_table, plot_file
from catbus.params import resolve
from catbus.recording.recorder import DROPS_TOPIC, Recorder
from catbus.recording.reader import RecordedMessage, Recording

ROOT = Path(__file__).resolve().parents[1]
BASE_TICK_NS = 10_000_000  # 0.01 s
EVALUATOR = "nodes.flat_evade.evaluator:evaluate"
PLOTTER = "nodes.flat_evade.plot:plot"


def run_info(**changes: Any) -> dict[str, Any]:
    info = {"launch": "nodes:\n  env: {class: nodes.flat_evade.env:FlatEvadeEnv}\n", "seed": 3,
            "mode": "stepped", "base_tick_ns": BASE_TICK_NS,
            "versions": {"catbus": "0.1.0", "numpy": np.__version__},
            "evaluators": [EVALUATOR], "plotters": [PLOTTER]}
    info.update(changes)
    return info


def start_recorder(path: Path, info: dict[str, Any] | None = None, **params: Any) -> Recorder:
    recorder = Recorder()
    recorder.bind("recorder", 3, None, run_info() if info is None else info)
    recorder.setup(resolve(Recorder.params, {"path": str(path), **params}, where="test",
                           prefix="nodes.recorder.params"))
    return recorder


def send(recorder: Recorder, topic: str, value: Any, *, tick: int, seq: int,
         publisher: str = "env") -> bytes:
    """Feed one message as the runtime would; return the record bytes it must store."""
    header = codec.Header(publisher, seq, tick, tick * (BASE_TICK_NS / 1e9), time.time())
    frames = codec.encode_message(topic, header, value)
    _, _, payload = codec.open_envelope(frames[0])
    buffers = frames[1:]
    recorder.on_raw(topic, header, payload, buffers)
    return codec.record_bytes(payload, buffers)


def sample_value(tick: int) -> dict[str, Any]:
    return {"pos": np.array([[tick], [tick + 0.5]]),          # (2,1) float64
            "ids": np.arange(4, dtype=np.int32)[::2],          # not contiguous: copied once
            "mask": np.array([True, False]),
            "scalar": np.float32(tick / 3),
            "name": f"tick {tick}", "nested": {"list": [1, 2.5, None]}}


def write_sample(path: Path, ticks: int = 20, **params: Any) -> list[tuple[str, int, bytes]]:
    recorder = start_recorder(path, **params)
    sent = []
    for tick in range(ticks):
        for topic in ("env/state", "robot/sensors"):
            sent.append((topic, tick, send(recorder, topic, sample_value(tick), tick=tick,
                                           seq=tick)))
        send(recorder, "catbus/progress", {"tick": tick}, tick=tick, seq=tick)
    recorder.close()
    return sent


# -- recorder and reader -------------------------------------------------------------------------
@pytest.mark.timeout(20)
def test_round_trip_keeps_bytes_times_and_order(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "run.mcap"   # parent folders are created
    sent = write_sample(path)
    recording = Recording(path)
    assert recording.complete
    assert recording.topics() == ["env/state", "robot/sensors", DROPS_TOPIC]
    got = [m for m in recording.messages() if m.topic != DROPS_TOPIC]
    assert [(m.topic, m.tick, m.data) for m in got] == sent           # bytes exactly as sent
    for m in got:
        assert m.sequence == m.tick
        assert m.sim_time == pytest.approx(m.tick * 0.01)
        assert m.log_time_ns > 0
    first = got[2]  # env/state at tick 1
    assert first.topic == "env/state" and first.tick == 1
    np.testing.assert_array_equal(first.value["pos"], [[1.0], [1.5]])
    assert first.value["pos"].shape == (2, 1)
    np.testing.assert_array_equal(first.value["ids"], [0, 2])
    assert first.value["ids"].dtype == np.int32
    assert first.value["mask"].tolist() == [True, False]
    assert first.value["scalar"] == np.float32(1 / 3)
    assert first.value["name"] == "tick 1" and first.value["nested"] == {"list": [1, 2.5, None]}
    assert [m.tick for m in recording.messages("robot/sensors")] == list(range(20))
    undecoded = next(recording.messages(["env/state"], decode=False))
    assert undecoded.value is None and undecoded.data == sent[0][2]


@pytest.mark.timeout(20)
def test_publish_time_is_sim_time_in_ns(tmp_path: Path) -> None:
    from mcap.reader import make_reader

    path = tmp_path / "run.mcap"
    write_sample(path, ticks=5)
    with open(path, "rb") as handle:
        rows = [(c.topic, c.message_encoding, m.publish_time, m.sequence)
                for _, c, m in make_reader(handle).iter_messages(log_time_order=False)]
    state = [r for r in rows if r[0] == "env/state"]
    assert [r[2] for r in state] == [t * BASE_TICK_NS for t in range(5)]
    assert [r[3] for r in state] == list(range(5))
    assert {r[1] for r in rows} == {"catbus-msgpack"}


@pytest.mark.timeout(20)
def test_same_input_gives_equal_messages_apart_from_log_time(tmp_path: Path) -> None:
    write_sample(tmp_path / "a.mcap")
    time.sleep(0.01)
    write_sample(tmp_path / "b.mcap")
    a = list(Recording(tmp_path / "a.mcap").messages())
    b = list(Recording(tmp_path / "b.mcap").messages())
    assert a == b                                       # equality ignores log time and value
    assert all(isinstance(m, RecordedMessage) for m in a)
    assert [m.log_time_ns for m in a] != [m.log_time_ns for m in b]


@pytest.mark.timeout(20)
def test_metadata_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    info = run_info(launch="123", extra={"k": [1, 2]})   # launch text that looks like JSON
    recorder = start_recorder(path, info)
    recorder.close()
    recording = Recording(path)
    meta = recording.metadata
    assert meta["launch"] == "123"                       # text stays text
    assert meta["seed"] == 3 and meta["mode"] == "stepped"
    assert meta["base_tick_ns"] == BASE_TICK_NS and recording.base_tick_ns == BASE_TICK_NS
    assert meta["versions"]["catbus"] == "0.1.0"
    assert meta["evaluators"] == [EVALUATOR] and meta["plotters"] == [PLOTTER]
    assert meta["extra"] == {"k": [1, 2]}
    assert recording.end_metadata["messages"] == 0 and recording.end_metadata["drops"] == 0
    assert [m.value["total"] for m in recording.messages(DROPS_TOPIC)] == [0]


@pytest.mark.timeout(20)
def test_missing_run_info_keys_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    recorder = start_recorder(path, {})
    send(recorder, "a", 1, tick=0, seq=0)
    recorder.close()
    recording = Recording(path)
    assert "seed" not in recording.metadata and recording.base_tick_ns is None
    assert [(m.topic, m.tick, m.value) for m in recording.messages("a")] == [("a", None, 1)]
    with pytest.raises(CatbusError, match="names no evaluator"):
        evaluate_file(path)
    with pytest.raises(CatbusError, match="names no plotter"):
        plot_file(path, tmp_path / "x.png")


@pytest.mark.timeout(20)
def test_bookkeeping_topics_kept_but_progress_skipped(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    recorder = start_recorder(path)
    send(recorder, "catbus/progress", {"tick": 0}, tick=0, seq=0)
    send(recorder, "catbus/log", {"text": "hello"}, tick=0, seq=0)
    send(recorder, "env/state", {"x": 1}, tick=0, seq=0)
    recorder.close()
    assert Recording(path).topics() == ["catbus/log", "env/state", DROPS_TOPIC]


@pytest.mark.timeout(20)
def test_drops_counted_per_publisher_and_topic(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    recorder = start_recorder(path)
    for seq in (0, 1, 3, 4, 7):                       # 2, 5 and 6 lost
        send(recorder, "env/state", seq, tick=seq, seq=seq)
    for seq in (0, 1, 2):
        send(recorder, "robot/action", seq, tick=seq, seq=seq, publisher="robot")
    for seq in (0, 1, 0, 1):                          # a restarted publisher: not a loss
        send(recorder, "human/action", seq, tick=seq, seq=seq, publisher="human")
    recorder.close()
    assert recorder.drops == 3
    assert recorder.drops_by_stream == {("env", "env/state"): 3}
    assert recorder.restarts_by_stream == {("human", "human/action"): 1}
    recording = Recording(path)
    [report] = [m.value for m in recording.messages(DROPS_TOPIC)]
    assert report["total"] == 3
    streams = {(s["publisher"], s["topic"]): s for s in report["streams"]}
    assert streams[("env", "env/state")]["lost"] == 3
    assert streams[("env", "env/state")]["received"] == 5
    assert streams[("robot", "robot/action")]["lost"] == 0
    assert recording.end_metadata["drops"] == 3


@pytest.mark.timeout(20)
def test_close_is_safe_twice_and_after_failed_setup(tmp_path: Path) -> None:
    recorder = start_recorder(tmp_path / "run.mcap")
    recorder.close()
    recorder.close()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    broken = Recorder()
    broken.bind("recorder", 0, None, run_info())
    with pytest.raises(OSError):
        broken.setup({"path": str(blocker / "run.mcap"), "chunk_size": 4096})
    broken.close()
    broken.close()
    never_set_up = Recorder()
    never_set_up.close()


# -- files cut short ------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_truncated_copies_read_up_to_the_cut(tmp_path: Path) -> None:
    full = tmp_path / "full.mcap"
    sent = write_sample(full, ticks=60, chunk_size=2048, flush_interval=0.0)
    data = full.read_bytes()
    complete_counts = []
    for cut in list(range(0, 200, 7)) + list(range(200, len(data) - 1, max(1, len(data) // 40))):
        part = tmp_path / f"cut{cut}.mcap"
        part.write_bytes(data[:cut])
        if cut < 8:
            with pytest.raises(CatbusError, match="not an MCAP"):
                Recording(part)
            continue
        recording = Recording(part)
        assert not recording.complete
        got = [(m.topic, m.tick, m.data) for m in recording.messages()
               if m.topic != DROPS_TOPIC]
        assert got == sent[:len(got)]                 # a prefix, never garbage
        if cut > len(data) // 2:
            assert recording.metadata["seed"] == 3    # metadata is at the start
            assert len(got) > 0
        complete_counts.append(len(got))
    assert complete_counts == sorted(complete_counts)
    half = tmp_path / "half.mcap"
    half.write_bytes(data[: len(data) // 2])
    assert 0 < len(list(Recording(half).messages())) < len(sent)
    assert set(Recording(half).topics()) <= {"env/state", "robot/sensors"}


WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from catbus.wire import codec
    from catbus.params import resolve
    from catbus.recording.recorder import Recorder
    recorder = Recorder()
    recorder.bind("recorder", 3, None, {"seed": 3, "mode": "stepped", "base_tick_ns": 10_000_000})
    recorder.setup(resolve(Recorder.params, {"path": sys.argv[1], "chunk_size": 2048,
                                             "flush_interval": 0.0}, where="", prefix=""))
    for tick in range(300):
        header = codec.Header("env", tick, tick, tick * 0.01, time.time())
        payload, buffers = codec.encode_payload({"x": np.full((2, 1), float(tick))})
        recorder.on_raw("env/state", header, payload, buffers)
    print("written", flush=True)
    time.sleep(60)
""")


@pytest.mark.timeout(30)
def test_recording_of_a_killed_writer_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(ROOT)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "written"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    recording = Recording(path)
    assert not recording.complete
    assert recording.metadata["seed"] == 3
    ticks = [m.tick for m in recording.messages()]
    # everything up to the last complete chunk: a prefix, short of the end by less than a chunk
    assert ticks == list(range(len(ticks)))
    assert 250 <= len(ticks) < 300
    assert recording.messages().__next__().value["x"].tolist() == [[0.0], [0.0]]


@pytest.mark.timeout(20)
def test_clear_errors_for_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CatbusError, match=r"nope\.mcap: no such recording"):
        Recording(tmp_path / "nope.mcap")
    text = tmp_path / "notes.mcap"
    text.write_text("just some text, long enough to look like a file\n")
    with pytest.raises(CatbusError, match=r"notes\.mcap: not an MCAP recording"):
        Recording(text)
    empty = tmp_path / "empty.mcap"
    empty.write_bytes(b"")
    with pytest.raises(CatbusError, match="empty"):
        Recording(empty)
    with pytest.raises(CatbusError, match="not a file"):
        Recording(tmp_path)
    assert cmd_eval(argparse.Namespace(file=str(text), json=False, d_min=None)) == 2
    assert cmd_plot(argparse.Namespace(file=str(tmp_path / "nope.mcap"), output=None,
                                       mp4=False)) == 2


# -- flat_evade evaluator and plot ----------------------------------------------------------------
def col(x: float, y: float) -> np.ndarray:
    return np.array([[x], [y]], dtype=float)


def env_state(robot: np.ndarray, human: np.ndarray, robot_goals: int) -> dict[str, Any]:
    def body(p: np.ndarray) -> dict[str, Any]:
        return {"state": np.vstack([p, col(0, 0)]), "pos": p, "vel": col(0, 0)}

    def goal(p: np.ndarray, count: int, target: str) -> dict[str, Any]:
        return {**body(p), "count": count, "adv_target": target}

    return {"robot": body(robot), "robot_goal": goal(robot + 5, robot_goals, "none"),
            "human": body(human), "human_goal": goal(human - 5, 0, "robot")}


def robot_sensors(obstacles: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"cartesian_sensor": {"pos": col(0, 0), "vel": col(0, 0)},
            "state_sensor": {"state": np.zeros((4, 1))},
            "obstacle_sensor": {name: {"rel_pos": rel, "rel_vel": col(0, 0)}
                                for name, rel in obstacles.items()},
            "goal_sensor": {"rel_pos": col(5, 5), "rel_vel": col(0, 0)},
            "communication_sensor": {}}


def write_flat_evade(path: Path) -> None:
    """Three ticks by hand: reset, then two steps.

    true distance: 5 (reset), 0.5, 10      -> min 0.5 at tick 1; 2 states below d_min = 6
    radar:  reset (0, 0.1) -- left out, ln 0.1 would count
            tick 1: |(0.5, 0)| = 0.5 and |(0, 2)| = 2 -> delta 0.5 -> ln 0.5
            tick 2: no obstacle -> 1e9 -> 0
    """
    recorder = start_recorder(path)
    robot = col(0, 0)
    humans = [col(3, 4), col(0, 0.5), col(6, 8)]
    radars = [{"human": col(0, 0.1)}, {"human": col(0.5, 0), "other": col(0, 2)}, {}]
    for tick in range(3):
        send(recorder, "robot/sensors", robot_sensors(radars[tick]), tick=tick, seq=tick)
        send(recorder, "human/sensors", {"obstacle_sensor": {}}, tick=tick, seq=tick)
        send(recorder, "env/state", env_state(robot, humans[tick], robot_goals=min(tick, 2)),
             tick=tick, seq=tick)
        send(recorder, "robot/action", {"control": col(1, 1)}, tick=tick, seq=tick,
             publisher="robot")
    recorder.close()


@pytest.mark.timeout(20)
def test_flat_evade_scores_by_hand(tmp_path: Path) -> None:
    from nodes.flat_evade.evaluator import evaluate

    path = tmp_path / "fe.mcap"
    write_flat_evade(path)
    scores = evaluate(Recording(path), d_min=6.0)
    assert scores["achieved_goals"] == 2
    assert scores["safety"] == pytest.approx(math.log(0.5))
    assert scores["min_distance"] == pytest.approx(0.5)
    assert scores["min_distance_tick"] == 1
    assert scores["min_distance_time"] == pytest.approx(0.01)
    assert scores["steps_below_d_min"] == 2
    assert scores["steps"] == 2
    assert scores["human_goals"] == 0
    assert scores["min_radar_distance"] == pytest.approx(0.5)
    assert scores["steps_radar_below_d0"] == 1
    assert evaluate(Recording(path))["steps_below_d_min"] == 3     # default d_min = 15
    via_file = evaluate_file(path, d_min=6.0)
    assert via_file == scores
    table = format_table(via_file)
    assert "achieved_goals" in table and "-0.693147" in table


@pytest.mark.timeout(20)
def test_eval_command_prints_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "fe.mcap"
    write_flat_evade(path)
    assert cmd_eval(argparse.Namespace(file=str(path), json=True, d_min=6.0)) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["steps_below_d_min"] == 2 and scores["achieved_goals"] == 2
    assert cmd_eval(argparse.Namespace(file=str(path), json=False, d_min=None)) == 0
    out = capsys.readouterr().out
    assert "safety" in out and "stepped" in out
    with pytest.raises(CatbusError, match="no option bogus"):
        evaluate_file(path, bogus=1)


@pytest.mark.timeout(60)
def test_plot_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "fe.mcap"
    write_flat_evade(path)
    out = tmp_path / "pictures" / "fe.png"
    assert plot_file(path, out) == [str(out)]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert cmd_plot(argparse.Namespace(file=str(path), output=None, mp4=False)) == 0
    assert (tmp_path / "fe.png").stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out


@pytest.mark.timeout(20)
def test_mp4_without_ffmpeg_is_a_clear_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import nodes.flat_evade.plot as fe_plot

    path = tmp_path / "fe.mcap"
    write_flat_evade(path)
    monkeypatch.setattr(fe_plot.shutil, "which", lambda name: None)
    with pytest.raises(CatbusError, match="ffmpeg"):
        plot_file(path, tmp_path / "fe.mp4", mp4=True)
    assert not (tmp_path / "fe.mp4").exists()


@pytest.mark.timeout(60)
def test_mp4_animation_frames_with_a_stand_in_writer(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The animation code runs without ffmpeg: a stand-in writer takes the frames."""
    import matplotlib.animation
    import nodes.flat_evade.plot as fe_plot

    frames: list[int] = []

    class StandIn(matplotlib.animation.AbstractMovieWriter):
        def __init__(self, fps: int, bitrate: int | None = None) -> None:
            super().__init__(fps=fps)

        def setup(self, fig: Any, outfile: str, dpi: float | None = None) -> None:
            super().setup(fig, outfile, dpi=dpi)

        def grab_frame(self, **kwargs: Any) -> None:
            self.fig.canvas.draw()          # render what update() set for this frame
            frames.append(1)

        def finish(self) -> None:
            Path(self.outfile).write_bytes(b"movie")

    path = tmp_path / "fe.mcap"
    write_flat_evade(path)
    monkeypatch.setattr(fe_plot.shutil, "which", lambda name: "/usr/bin/ffmpeg")
    monkeypatch.setattr(matplotlib.animation, "FFMpegWriter", StandIn)
    written = plot_file(path, tmp_path / "fe.png", mp4=True)
    assert written == [str(tmp_path / "fe.png"), str(tmp_path / "fe.mp4")]
    assert (tmp_path / "fe.mp4").read_bytes() == b"movie"
    assert len(frames) >= 2
