"""A member of the run sends a malformed example of every field of every message kind -- data
headers and progress to a node and to the recorder, control messages to the registry -- during a
stepped run: every one is counted where it arrived, and the recording of every other node's
topics equals inline's (``tests/fuzz_nodes.py`` says what is sent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import catbus
from catbus.recording.verify import channel_sequences
from tests.fuzz_nodes import control_variants, header_variants, progress_variants

ROOT = Path(__file__).resolve().parent.parent


def fuzzed_launch() -> dict:
    launch = yaml.safe_load((ROOT / "launch" / "flat_evade.yaml").read_text())
    launch.pop("record", None)
    launch.update(pythonpath=[str(ROOT)], steps=100, seed=4)
    launch["nodes"]["fuzzer"] = {"class": "tests.fuzz_nodes:Fuzzer", "params": {"at": 40}}
    return launch


def others(path: Path) -> dict:
    sequences = channel_sequences(path)
    sequences.pop("fuzzer/out")
    return sequences


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("bus_sandbox")
def test_every_malformed_field_is_counted_and_changes_nothing(tmp_path: Path) -> None:
    stepped, inline = tmp_path / "stepped.mcap", tmp_path / "inline.mcap"
    result = catbus.run(fuzzed_launch(), mode="stepped", record=stepped, evaluate=False)
    catbus.run(fuzzed_launch(), mode="inline", record=inline, evaluate=False)
    assert others(stepped) == others(inline)
    headers, progress = len(header_variants(0, 0)), len(progress_variants(0))
    assert result.registry_malformed == len(control_variants())
    assert result.nodes["env"]["malformed"] == progress, result.nodes["env"]
    recorder = result.nodes["recorder"]
    assert recorder["malformed"] == headers + progress + 1, recorder   # + the bad payload
    assert result.malformed["total"] == result.registry_malformed + progress + \
        recorder["malformed"]
    assert not result.failures
    # The recording has the counters too: every node's on catbus/stats as it left, and the
    # registry's (as the recorder last heard it) in catbus.end.
    from catbus.recording.reader import Recording

    recording = Recording(stepped)
    stats = {m.value["node"]: m.value["stats"] for m in recording.messages("catbus/stats")}
    assert stats["env"]["malformed"] == progress and set(stats) >= {"env", "robot", "human"}
    assert isinstance(recording.end_metadata.get("registry_refused"), int)
