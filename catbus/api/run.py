"""The Python API under the CLI: :func:`run`, :func:`start` and :func:`load`.

Scripts, sweeps and tests drive runs exactly as people do from the command line. Importing this
module is cheap (no ZeroMQ, no MCAP): the runners are imported when a run starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from catbus.errors import ConfigError
from catbus.spec.launchfile import LaunchSpec, build_launch, load_launch
from catbus.api.execute import check_timing, execute
from catbus.api.result import RunResult
from catbus.runtime.logs import check_level

if TYPE_CHECKING:
    from catbus.api.handle import RunHandle


def load(launch: str | os.PathLike | Mapping[str, Any] | LaunchSpec, *, mode: str | None = None,
         seed: int | None = None, steps: int | None = None, duration: float | None = None,
         max_steps: int | None = None, overrides: Sequence[str] | Mapping[str, Any] = (),
         record: str | os.PathLike | bool | None = None, remote: Sequence[str] = (),
         bus: str | None = None, pace: float | None = None,
         keys: str | os.PathLike | None = None,
         args: Mapping[str, Any] | Sequence[str] | None = None,
         groups: Sequence[str] | Mapping[str, Sequence[str]] = ()) -> LaunchSpec:
    """Read and check a launch without running it.

    Every keyword is a command-line value and wins over the launch's own; ``None`` (the default)
    keeps the launch's value. ``0`` is a value like any other: ``seed=0`` and ``steps=0`` (the
    reset tick only) replace the file's seed and steps.

    Args:
        launch: A launch file path, a dict with the same layout as the YAML (relative paths in it
            are relative to the current folder), or a :class:`LaunchSpec` (returned as it is when
            no option is given, else rebuilt from its document with the options applied).
        mode: ``"parallel"``, ``"stepped"`` or ``"inline"``.
        seed: The run seed (non-negative integer).
        steps: Periods of the first periodic node after the reset (``--steps``).
        duration: Seconds of sim time (wall time in parallel); not together with ``steps``.
        max_steps: The bound of a run without ``steps`` or ``duration`` (``--max-steps``; a
            node is expected to end the episode before), in periods of the first periodic node.
        overrides: ``--set`` assignments, as strings (``"robot.safe_controller=Unsafe"``) or a
            mapping (``{"robot.safe_controller": "Unsafe"}``).
        record: Path of an MCAP recording, relative to the current folder; ``False`` turns off a
            recording the launch asks for.
        remote: Names of nodes to treat as remote (started elsewhere with ``catbus node``).
        bus: The registry address to bind, ``"ipc"`` or ``"tcp://HOST:PORT"``.
        pace: ``stepped`` and ``inline``: run at this many times real time (``--pace``; 1: as
            fast as the wall clock, to watch and swap by hand); None: as fast as possible.
        keys: A keys folder (``catbus keys generate``) that secures a TCP bus with CURVE
            (``--keys``; a launch's ``security: {keys: DIR}``).
        args: Values of the launch's declared ``args:`` (``--arg NAME=VALUE``): a mapping
            ``{"n": 300}``, or ``"NAME=VALUE"`` strings read as YAML.
        groups: Node groups (``--group``), stepped: each group's nodes run in one process.
            ``{"world": ["env", "human", "recorder"]}`` or ``"world=env,human,recorder"``
            strings; over the launch's ``group:`` keys.

    Returns:
        The checked :class:`~catbus.spec.launchfile.LaunchSpec`.

    Raises:
        ConfigError: The launch or an option is wrong; the message names the file, the field and
            the fix.
    """
    if isinstance(overrides, Mapping):
        overrides = [f"{key}={_yaml_scalar(value)}" for key, value in overrides.items()]
    options = dict(mode=mode, seed=seed, steps=steps, duration=duration, max_steps=max_steps,
                   overrides=list(overrides), record=record, remote=list(remote), bus=bus,
                   pace=pace, keys=keys, args=args, groups=_group_options(groups))
    if isinstance(launch, LaunchSpec):
        if args:
            raise ConfigError(str(launch.path or "<launch>"), "args",
                              "a LaunchSpec has its arguments already substituted; give args= "
                              "when loading the file (catbus.load(path, args={...}))")
        options.pop("args")
        # "Given" means not None (and, for the lists, not empty): seed=0, steps=0 and
        # record=False are values, not "nothing".
        if any(value is not None and value != [] for value in options.values()):
            launch = build_launch(launch.document, where=str(launch.path or "<launch>"),
                                  base_dir=(launch.path.parent if launch.path else Path.cwd()),
                                  **options)
        return launch
    if isinstance(launch, Mapping):
        return build_launch(launch, **options)
    if not isinstance(launch, (str, os.PathLike)):
        raise ConfigError("", "launch", f"must be a launch file path, a dict or a LaunchSpec, "
                                        f"got {type(launch).__name__}")
    return load_launch(launch, **options)


def _group_options(groups: Sequence[str] | Mapping[str, Sequence[str]]) -> list[str]:
    """``groups=`` as ``NAME=NODE,NODE`` strings (what ``--group`` gives)."""
    if isinstance(groups, Mapping):
        return [f"{name}={','.join(nodes)}" for name, nodes in groups.items()]
    return [groups] if isinstance(groups, str) else list(groups)


def _yaml_scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def run(launch: str | os.PathLike | Mapping[str, Any] | LaunchSpec, *, mode: str | None = None,
        seed: int | None = None, steps: int | None = None, duration: float | None = None,
        max_steps: int | None = None, overrides: Sequence[str] | Mapping[str, Any] = (),
        record: str | os.PathLike | bool | None = None, remote: Sequence[str] = (),
        bus: str | None = None, remote_timeout: float = 120.0, progress: bool | None = False,
        deadline: float = 30.0, evaluate: bool = True, log_level: str = "WARNING",
        pace: float | None = None, rejoin_timeout: float | None = None,
        insecure: bool = False,
        args: Mapping[str, Any] | Sequence[str] | None = None,
        groups: Sequence[str] | Mapping[str, Sequence[str]] = ()) -> RunResult:
    """Run a launch to its end (its steps or duration, the end of the episode, its
    ``max_steps`` bound, or Ctrl-C).

    The Python form of ``catbus launch``: the same launch, options and checks. Ctrl-C or SIGTERM
    during a ``parallel`` or ``stepped`` run stops every node gracefully (the recording is kept)
    and returns the interrupted result; see :func:`start` for a run in the background.

    A node class with ``one_per_process = True`` (its simulator allows one simulation per
    process): the first ``inline`` run of this process runs here, every later one inline in a
    fresh child process, with the same result and errors (:mod:`catbus.api.execute`).

    Args:
        launch: A launch file path, a dict with the same layout as the YAML, or a
            :class:`~catbus.spec.launchfile.LaunchSpec` from :func:`load`.
        mode: ``"parallel"`` (processes, wall clock), ``"stepped"`` (processes, deterministic
            lockstep) or ``"inline"`` (one process); ``None`` keeps the launch's (default
            parallel).
        seed: The run seed; ``None`` keeps the launch's (default 0).
        steps: Periods of the first periodic node (the environment) after the reset.
        duration: Seconds (sim time; wall time in parallel). Not together with ``steps``.
        max_steps: Without ``steps`` and ``duration`` the run lasts until a node ends the
            episode, at most this many periods of the first periodic node (``None``: the
            launch's ``max_steps``, default 100000); reaching it ends the run normally, with
            ``end_reason`` saying so.
        overrides: Parameter overrides, as ``--set`` strings (``"robot.safe_controller=Unsafe"``)
            or a mapping (``{"robot.safe_controller": "Unsafe"}``).
        record: Path of an MCAP recording of every topic (``False``: none, even if the launch
            asks for one).
        remote: Names of nodes started elsewhere with ``catbus node`` (not in inline mode).
        bus: Registry address: ``"ipc"`` (default) or ``"tcp://HOST:PORT"`` for remote nodes.
        remote_timeout: Seconds to wait for remote nodes to join.
        progress: Show a progress bar on stderr (``None``: only on a terminal).
        deadline: Seconds a node stuck in a step (silent, its link up) is waited for before
            the run fails naming it.
        evaluate: Score the recording with the evaluator its environment names.
        log_level: ``"DEBUG"``, ``"INFO"``, ``"WARNING"`` (default: a library call prints
            only warnings and errors) or ``"ERROR"``, any case: the nodes' ``self.log`` records
            at that level and above go to stderr as ``[NODE] LEVEL message`` and, when the run
            records, onto the ``catbus/log`` channel. ``catbus launch`` defaults to INFO.
        pace: ``stepped`` and ``inline``: this many times real time (None: as fast as possible).
        rejoin_timeout: Seconds a node whose link is down (a host unreachable, a process
            stopped) may take to come back before the run fails naming it; None: ``deadline``.
        insecure: Accept a keyless TCP bus on an address other hosts reach (``--insecure``):
            without keys anyone who reaches it can join, read and publish, so it is refused
            unless this says the risk is taken. Loopback and ipc buses need neither.
        args: Values of the launch file's ``args:`` (``--arg``), e.g. ``{"n": 300}``.
        groups: Node groups (``--group``; stepped): ``{"world": ["env", "human", "recorder"]}``
            runs those nodes in one process, their messages to each other passed without a
            socket (over the launch's ``group:`` keys).

    Returns:
        A :class:`~catbus.api.result.RunResult`: per-node statistics (``nodes``), ``wall_time``,
        ``end_reason``, ``interrupted``, ``record`` and ``scores``: what nodes reported
        (``Node.report``) merged with the evaluator's scores of the recording (its keys win);
        None if neither.

    Raises:
        ConfigError: The launch or an option is wrong. Raised before any process starts.
        NodeFailed: A node raised, died or got stuck; ``error.result`` has the statistics so far.
        RunTimeout: Remote nodes did not join in time, or the run did not start.
    """
    spec = checked_spec(launch, mode=mode, seed=seed, steps=steps, duration=duration,
                    max_steps=max_steps, overrides=overrides, record=record, remote=remote,
                    bus=bus, pace=pace, args=args, groups=groups)
    return execute(spec, progress=progress, deadline=deadline, remote_timeout=remote_timeout,
                   evaluate=evaluate, log_level=check_level(log_level),
                   rejoin_timeout=rejoin_timeout, insecure=insecure)


def start(launch: str | os.PathLike | Mapping[str, Any] | LaunchSpec, *, mode: str | None = None,
          seed: int | None = None, steps: int | None = None, duration: float | None = None,
          max_steps: int | None = None, overrides: Sequence[str] | Mapping[str, Any] = (),
          record: str | os.PathLike | bool | None = None, remote: Sequence[str] = (),
          bus: str | None = None, remote_timeout: float = 120.0, progress: bool | None = False,
          deadline: float = 30.0, evaluate: bool = True,
          log_level: str = "WARNING", pace: float | None = None,
          rejoin_timeout: float | None = None, insecure: bool = False,
          args: Mapping[str, Any] | Sequence[str] | None = None,
          groups: Sequence[str] | Mapping[str, Sequence[str]] = ()) -> RunHandle:
    """Start a run in the background and return its handle at once.

    Takes the same arguments as :func:`run`. The launch is checked here, before anything starts;
    the run itself goes on in a background thread (its nodes in their own processes, or inline in
    that thread). ``with catbus.start(...) as run:`` stops the run, if it is still going, when the
    block is left::

        with catbus.start("launch/demo.yaml", mode="parallel", duration=60) as run:
            print(run.bus)            # the registry address, for `catbus topic echo --bus ...`
            ...
            run.stop()                # like Ctrl-C: every node stops, the recording is kept
        result = run.wait()           # the interrupted RunResult

    Args:
        launch: As for :func:`run`.
        mode, seed, steps, duration, max_steps, overrides, record, remote, bus,
            remote_timeout, progress, deadline, evaluate, log_level, pace, rejoin_timeout,
            insecure, args, groups: As for :func:`run`.

    Returns:
        A :class:`~catbus.api.handle.RunHandle`: ``name``, ``mode``, ``bus``, ``done``,
        ``running``, ``wait(timeout)``, ``stop()``.

    Raises:
        ConfigError: The launch or an option is wrong (also: the registry cannot bind ``bus``).
            Raised here, before any process starts; every later failure comes from ``wait()``.
    """
    from catbus.api.handle import RunHandle

    spec = checked_spec(launch, mode=mode, seed=seed, steps=steps, duration=duration,
                    max_steps=max_steps, overrides=overrides, record=record, remote=remote,
                    bus=bus, pace=pace, args=args, groups=groups)
    return RunHandle(spec, progress=progress, deadline=deadline, rejoin_timeout=rejoin_timeout,
                     insecure=insecure,
                     remote_timeout=remote_timeout, evaluate=evaluate,
                     log_level=check_level(log_level))


def checked_spec(launch: Any, **options: Any) -> LaunchSpec:
    """:func:`load`, plus the checks that depend on the mode, and that the recording can be
    written (before any process starts)."""
    spec = load(launch, **options)
    from_cli = options.get("record") not in (None, False)
    where = "command line" if from_cli else str(spec.path or "<launch>")
    if spec.seed >= 2 ** 64:
        seed_cli = options.get("seed") is not None
        raise ConfigError("command line" if seed_cli else str(spec.path or "<launch>"),
                          "--seed" if seed_cli else "seed",
                          f"must be below 2**64 (it travels as a 64-bit integer), got {spec.seed}")
    _check_run_length(spec, options)
    if spec.record is not None:
        _check_record_folder(spec.record, where, "--record" if from_cli else "record")
    if spec.mode == "inline":
        remote_nodes = [n.name for n in spec.nodes if n.remote]
        if remote_nodes:
            raise ConfigError(str(spec.path or "<launch>"), f"nodes.{remote_nodes[0]}.remote",
                              "inline mode runs every node in this process and cannot wait for "
                              "remote nodes; use --mode stepped or parallel")
    return spec


#: The longest run, in seconds of sim time (and of wall time in parallel): a message's
#: ``sim_time`` is within +-2**34 s (codec.TIME_MAX) and its tick below 2**53 (codec.INT_MAX),
#: or receivers refuse it; a longer run would stall at that point instead of failing now.
RUN_SECONDS_MAX = 2 ** 34


def _check_run_length(spec: LaunchSpec, options: Mapping[str, Any]) -> None:
    """Refuse (ConfigError) ``steps``/``duration``/``max_steps`` that make a run longer than
    :data:`RUN_SECONDS_MAX` or its last tick 2**53 or more (``--steps 1e23`` crashed the
    launcher with an OverflowError after it had started the nodes)."""
    from catbus.spec.runinfo import parallel_duration, schedule_for

    key = "steps" if spec.steps is not None else \
        "duration" if spec.duration is not None else "max_steps"
    cli = options.get(key) is not None
    where, field = ("command line", "--" + key.replace("_", "-")) if cli else \
        (str(spec.path or "<launch>"), key)
    schedule = schedule_for(spec) if spec.mode != "parallel" else None
    if schedule is not None:
        seconds = schedule.last_tick * schedule.base_tick
        too_long = schedule.last_tick >= 2 ** 53 or seconds > RUN_SECONDS_MAX
    else:
        seconds = parallel_duration(spec) or 0.0
        too_long = seconds > RUN_SECONDS_MAX
    if too_long:
        value = getattr(spec, key)
        raise ConfigError(where, field, f"{value} makes the run {float(seconds):.3g} s long; at "
                                        f"most 2**34 s (~544 years) of sim time can be run")


def _check_record_folder(record: Path, where: str, field: str) -> None:
    """Refuse (ConfigError, exit 2) a recording that could not be written: its folder is made
    now (the recorder would make it anyway) and a file is created and removed in it, so
    ``--record /proc/nope/x.mcap`` is one line before anything starts, not a traceback after."""
    import tempfile

    path = Path(record)
    if path.is_dir():
        raise ConfigError(where, field, f"{path} is a folder; give a file path such as "
                                        f"{path / 'run.mcap'}")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".catbus-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(where, field, f"cannot write the recording {path}: its folder {folder} "
                                        f"cannot be created or written ({reason}); record to a "
                                        f"writable folder, e.g. --record runs/{path.name}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(where, field, f"cannot write the recording {path}: the file exists and "
                                        f"is not writable; remove it or record elsewhere")


__all__ = ["load", "run", "start", "execute", "check_timing"]
