"""Pictures of a flat_evade run, read from its recording: a PNG, and with ``mp4=True`` also an
animation beside it (same name, ``.mp4``).

Left: the robot's and the human's paths on the [0,100]^2 map (the map has no walls, so the view
grows when a body leaves it), where their goals were, start and end, and the closest approach.
Right: the true distance over time against ``d_min``, with the noisy radar distance the safety
score is computed from. Colours follow the original toolbox's renderer (robot red, human blue,
robot goal orange, human goal light blue).

Figures are drawn on matplotlib's Agg canvas directly, without pyplot: this works on machines
without a display and leaves the backend of an interactive session that imports it alone.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from catbus.errors import CatbusError
from catbus.recording.reader import Recording
from nodes.flat_evade.evaluator import NO_OBSTACLE, evaluate, radar_distance

COLORS = {"robot": "#e41a1c", "human": "#1f5fd6", "robot_goal": "#ff7f00",
          "human_goal": "#3399ff"}
MAP_SIZE = 100.0
MP4_FPS = 25
MP4_MAX_FRAMES = 1500


@dataclass(frozen=True)
class Track:
    """The run as arrays: one row per ``env/state`` message (reset included)."""

    time: np.ndarray        # (N,) seconds of sim time
    robot: np.ndarray       # (N, 2) true positions
    human: np.ndarray       # (N, 2)
    robot_goal: np.ndarray  # (N, 2) where the robot's goal was at each step
    human_goal: np.ndarray  # (N, 2)
    robot_goal_count: np.ndarray  # (N,) goals the robot had reached so far
    radar_time: np.ndarray  # (M,) sim time of each radar reading (robot/sensors)
    radar: np.ndarray       # (M,) smallest noisy radar distance (NaN: no obstacle seen)

    @property
    def distance(self) -> np.ndarray:
        return np.linalg.norm(self.robot - self.human, axis=1)


def load_track(recording: Recording, state_topic: str = "env/state",
               sensors_topic: str = "robot/sensors") -> Track:
    """Positions, goals and distances of a recording as arrays."""
    rows: dict[str, list[Any]] = {k: [] for k in ("time", "robot", "human", "robot_goal",
                                                  "human_goal", "count")}
    for message in recording.messages([state_topic]):
        state = message.value
        rows["time"].append(message.sim_time)
        for key in ("robot", "human", "robot_goal", "human_goal"):
            rows[key].append(np.asarray(state[key]["pos"], dtype=float).reshape(2))
        rows["count"].append(int(state["robot_goal"]["count"]))
    if not rows["time"]:
        raise CatbusError(f"{recording.path}: no {state_topic} messages, so nothing to plot")
    radar_time, radar = [], []
    for message in recording.messages([sensors_topic]):
        radar_time.append(message.sim_time)
        delta = radar_distance(message.value.get("obstacle_sensor"))
        radar.append(delta if delta < NO_OBSTACLE else np.nan)  # nothing seen: leave a gap
    return Track(time=np.asarray(rows["time"]), robot=np.asarray(rows["robot"]),
                 human=np.asarray(rows["human"]), robot_goal=np.asarray(rows["robot_goal"]),
                 human_goal=np.asarray(rows["human_goal"]),
                 robot_goal_count=np.asarray(rows["count"]),
                 radar_time=np.asarray(radar_time, dtype=float),
                 radar=np.asarray(radar, dtype=float))


def plot(recording: Recording, out: str, mp4: bool = False, d_min: float = 15.0) -> None:
    """Write the run's picture to ``out`` (PNG); with ``mp4`` also its animation to ``out`` with
    the suffix ``.mp4`` (needs ffmpeg on PATH; checked before anything is drawn). An ``out``
    ending in ``.mp4`` puts the PNG beside it as ``.png``."""
    if mp4 and shutil.which(matplotlib.rcParams["animation.ffmpeg_path"]) is None:
        raise CatbusError("an MP4 needs ffmpeg on PATH (e.g. `apt-get install ffmpeg`); "
                          "without --mp4 the PNG needs nothing else")
    target = Path(out)
    png = target.with_suffix(".png") if target.suffix.lower() == ".mp4" else target
    track = load_track(recording)
    scores = evaluate(recording, d_min=d_min)
    figure, artists = _draw(track, scores, d_min, _title(recording), swaps(recording))
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=130)
    if mp4:
        _animate(figure, artists, track, str(png.with_suffix(".mp4")))


# -- drawing ------------------------------------------------------------------------------------
def _title(recording: Recording) -> str:
    meta = recording.metadata
    bits = [recording.path.name]
    bits += [f"{key} {meta[key]}" for key in ("mode", "seed") if key in meta]
    if not recording.complete:
        bits.append("file cut short")
    return "flat_evade  ·  " + "  ·  ".join(bits)


def _distinct_positions(positions: np.ndarray) -> np.ndarray:
    """The successive different values of a piecewise-constant (N,2) series (goal placements)."""
    changed = np.ones(len(positions), dtype=bool)
    changed[1:] = np.any(positions[1:] != positions[:-1], axis=1)
    return positions[changed]


def _limits(track: Track) -> tuple[tuple[float, float], tuple[float, float]]:
    """The map, grown to show bodies and goals that left it (there are no walls)."""
    points = np.vstack([track.robot, track.human, track.robot_goal, track.human_goal])
    low = np.minimum(points.min(axis=0), 0.0)
    high = np.maximum(points.max(axis=0), MAP_SIZE)
    margin = 0.04 * (high - low).max()
    return (low[0] - margin, high[0] + margin), (low[1] - margin, high[1] + margin)


def _free_spot(anchor: np.ndarray, points: np.ndarray, xlim: tuple[float, float],
               ylim: tuple[float, float]) -> np.ndarray:
    """Where to put a label near ``anchor`` so it covers as little of the drawing as possible:
    of eight directions, the one whose spot is farthest from every plotted point (paths often
    run along one line, e.g. the human chasing the robot down the diagonal)."""
    span = max(xlim[1] - xlim[0], ylim[1] - ylim[0])
    step = max(1, len(points) // 2000)
    sample = points[::step]
    best, best_score = anchor, -np.inf
    for angle in np.deg2rad([45, 135, 315, 225, 0, 90, 180, 270]):
        spot = anchor + 0.14 * span * np.array([np.cos(angle), np.sin(angle)])
        # the box grows away from the anchor (see ha/va in _draw): it must fit in the view
        width, height = 0.22 * span, 0.09 * span
        x0 = spot[0] if spot[0] >= anchor[0] else spot[0] - width
        y0 = spot[1] if spot[1] >= anchor[1] else spot[1] - height
        inside = (xlim[0] <= x0 and x0 + width <= xlim[1]
                  and ylim[0] <= y0 and y0 + height <= ylim[1])
        center = np.array([x0 + width / 2, y0 + height / 2])
        score = float(np.min(np.linalg.norm(sample - center, axis=1))) - (0 if inside else span)
        if score > best_score:
            best, best_score = spot, score
    return best


def swaps(recording: Recording) -> list[tuple[float, str]]:
    """``(sim time, label)`` of every hot swap and restart in the recording (``catbus/swap``)."""
    marks = []
    for message in recording.messages("catbus/swap"):
        event = message.value if isinstance(message.value, dict) else {}
        what = "restarted" if event.get("kind") == "restart" else "swapped"
        marks.append((float(event.get("sim_time", 0.0)),
                      f"{event.get('node', '?')} {what} at tick {event.get('tick')}"))
    return marks


def _draw(track: Track, scores: dict[str, Any], d_min: float, title: str,
          swap_marks: Any = ()) -> tuple[Figure, dict[str, Any]]:
    figure = Figure(figsize=(13.5, 6.4), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(1, 2, width_ratios=[1.0, 1.25])
    ax_map = figure.add_subplot(grid[0])
    ax_dist = figure.add_subplot(grid[1])
    summary = (f"goals reached {scores['achieved_goals']}   ·   safety {scores['safety']:.3g}   ·   "
               f"min distance {scores['min_distance']:.2f}   ·   "
               f"{scores['steps_below_d_min']} of {len(track.time)} states closer than "
               f"d_min = {d_min:g}")
    figure.suptitle(f"{title}\n{summary}", fontsize=12)
    artists: dict[str, Any] = {"ax_map": ax_map, "ax_dist": ax_dist}

    # -- map panel
    xlim, ylim = _limits(track)
    ax_map.add_patch(Rectangle((0, 0), MAP_SIZE, MAP_SIZE, facecolor="#f6f6f6",
                               edgecolor="#bbbbbb", lw=1.0, zorder=0))
    ax_map.set_xlim(*xlim)
    ax_map.set_ylim(*ylim)
    ax_map.set_aspect("equal")
    ax_map.grid(True, color="#e2e2e2", lw=0.6, zorder=0.5)
    ax_map.set_xlabel("x")
    ax_map.set_ylabel("y")
    ax_map.set_title("paths", fontsize=11)

    for key, marker, size, label in (("robot_goal", "*", 190, "robot goals"),
                                      ("human_goal", "X", 90, "human goals")):
        goals = _distinct_positions(getattr(track, key))
        ax_map.scatter(goals[:, 0], goals[:, 1], marker=marker, s=size, color=COLORS[key],
                       edgecolor="white", linewidth=0.8, zorder=5, label=label)
        for index, (gx, gy) in enumerate(goals, start=1):
            if 1 < len(goals) <= 20:  # numbers tell the order; past 20 they only clutter
                ax_map.annotate(str(index), (gx, gy), xytext=(5, 4), textcoords="offset points",
                                fontsize=8, color=COLORS[key], zorder=5)

    for body in ("robot", "human"):
        path = getattr(track, body)
        (line,) = ax_map.plot(path[:, 0], path[:, 1], color=COLORS[body], lw=1.8, zorder=3,
                              label=body)
        ax_map.scatter(*path[0], s=70, marker="o", facecolor="none", edgecolor=COLORS[body],
                       linewidth=2, zorder=6)
        ax_map.scatter(*path[-1], s=60, marker="s", color=COLORS[body], edgecolor="white",
                       linewidth=0.8, zorder=6)
        artists[f"{body}_path"] = line
    # proxies so the legend explains start/end markers once
    ax_map.scatter([], [], s=70, marker="o", facecolor="none", edgecolor="#555555", lw=2,
                   label="start")
    ax_map.scatter([], [], s=60, marker="s", color="#555555", label="end")

    distance = track.distance
    closest = int(np.argmin(distance))
    a, b = track.robot[closest], track.human[closest]
    ax_map.plot([a[0], b[0]], [a[1], b[1]], color="black", lw=1.2, ls="--", zorder=7)
    ax_map.scatter([a[0], b[0]], [a[1], b[1]], s=22, color="black", zorder=7)
    middle = (a + b) / 2
    label = _free_spot(middle, np.vstack([track.robot, track.human, track.robot_goal,
                                          track.human_goal]), xlim, ylim)
    ax_map.annotate(f"closest {distance[closest]:.2f}\nat t = {track.time[closest]:.2f} s",
                    middle, xytext=label, textcoords="data", fontsize=9,
                    ha="left" if label[0] >= middle[0] else "right",
                    va="bottom" if label[1] >= middle[1] else "top",
                    bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="#999999", alpha=0.9),
                    arrowprops=dict(arrowstyle="-", color="#666666", lw=0.8), zorder=8)
    ax_map.legend(loc="best", fontsize=8.5, framealpha=0.92, ncol=2)

    # -- distance panel
    if len(track.radar):
        ax_dist.plot(track.radar_time, track.radar, color="#9a9a9a", lw=0.8, alpha=0.9,
                     label="radar distance (noisy)", zorder=2)
    ax_dist.plot(track.time, distance, color="#222222", lw=1.8, label="true distance", zorder=3)
    ax_dist.axhline(d_min, color=COLORS["robot"], ls="--", lw=1.2, label=f"d_min = {d_min:g}")
    ax_dist.axhspan(0, d_min, color=COLORS["robot"], alpha=0.06, zorder=0)
    reached = np.flatnonzero(np.diff(track.robot_goal_count) > 0) + 1
    for n, index in enumerate(reached[:40]):  # a few lines explain, a forest hides the curve
        ax_dist.axvline(track.time[index], color=COLORS["robot_goal"], lw=1.0, ls=":", alpha=0.8,
                        label="robot reached a goal" if n == 0 else None, zorder=1)
    for t, label in swap_marks:   # hot swaps and restarts
        ax_dist.axvline(t, color="#7b2cbf", lw=2.0, ls="-.", label=label, zorder=4)
    ax_dist.scatter([track.time[closest]], [distance[closest]], s=40, color="black", zorder=5)
    late = track.time[closest] > track.time[0] + 0.75 * (track.time[-1] - track.time[0])
    top = max(float(distance.max()), d_min) * 1.08
    # above the point, unless that would sit on the d_min line and there is room below
    below = (0 < d_min - distance[closest] < 0.07 * top) and distance[closest] > 0.08 * top
    ax_dist.annotate(f"min {distance[closest]:.2f}", (track.time[closest], distance[closest]),
                     xytext=(-8 if late else 8, -10 if below else 10),
                     textcoords="offset points", fontsize=9, ha="right" if late else "left",
                     va="top" if below else "bottom")
    ax_dist.set_xlim(track.time[0], max(track.time[-1], track.time[0] + 1e-9))
    ax_dist.set_ylim(0, top)
    ax_dist.set_xlabel("sim time [s]")
    ax_dist.set_ylabel("distance")
    ax_dist.grid(True, color="#e2e2e2", lw=0.6)
    ax_dist.set_title("distance between robot and human", fontsize=11)
    ax_dist.legend(loc="upper right", fontsize=8.5, framealpha=0.92)
    return figure, artists


def _animate(figure: Figure, artists: dict[str, Any], track: Track, out: str) -> None:
    """Replay the run in real time (25 frames per simulated second, at most MP4_MAX_FRAMES)."""
    from matplotlib.animation import FFMpegWriter, FuncAnimation

    ax_map, ax_dist = artists["ax_map"], artists["ax_dist"]
    figure.canvas.draw()                 # lay out once, then freeze: a layout per frame is slow
    figure.set_layout_engine("none")
    duration = float(track.time[-1] - track.time[0])
    frames = int(min(MP4_MAX_FRAMES, max(2, duration * MP4_FPS + 1)))
    indices = np.unique(np.searchsorted(track.time, np.linspace(track.time[0], track.time[-1],
                                                                frames)))
    indices = np.clip(indices, 0, len(track.time) - 1)
    for body in ("robot", "human"):
        artists[f"{body}_path"].set_alpha(0.15)
    trails = {body: ax_map.plot([], [], color=COLORS[body], lw=2.2, zorder=9)[0]
              for body in ("robot", "human")}
    heads = {body: ax_map.scatter([], [], s=110, color=COLORS[body], edgecolor="black",
                                  zorder=10) for body in ("robot", "human")}
    goals = {key: ax_map.scatter([], [], s=260 if key == "robot_goal" else 130,
                                 marker="*" if key == "robot_goal" else "X",
                                 color=COLORS[key], edgecolor="black", zorder=10)
             for key in ("robot_goal", "human_goal")}
    cursor = ax_dist.axvline(track.time[0], color="black", lw=1.0)
    clock = ax_map.text(0.98, 0.02, "", transform=ax_map.transAxes, ha="right", fontsize=10)

    def update(index: int) -> list[Any]:
        for body in ("robot", "human"):
            path = getattr(track, body)[: index + 1]
            trails[body].set_data(path[:, 0], path[:, 1])
            heads[body].set_offsets(path[-1:])
        for key in ("robot_goal", "human_goal"):
            goals[key].set_offsets(getattr(track, key)[index: index + 1])
        cursor.set_xdata([track.time[index]] * 2)
        clock.set_text(f"t = {track.time[index]:.2f} s")
        return [*trails.values(), *heads.values(), *goals.values(), cursor, clock]

    animation = FuncAnimation(figure, update, frames=list(indices), blit=False)
    # Rendering takes a while (about 0.2 s a frame here), so a terminal gets a progress bar.
    from tqdm import tqdm

    with tqdm(total=len(indices), unit="frame", desc=f"writing {out}", leave=False,
              disable=not sys.stderr.isatty()) as bar:
        animation.save(out, writer=FFMpegWriter(fps=MP4_FPS, bitrate=2400), dpi=100,
                       progress_callback=lambda done, total: bar.update(1))


__all__ = ["plot", "load_track", "Track"]
