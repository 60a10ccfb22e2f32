"""Keys folders (catbus.security.keys) and the messages built from them: no process, no socket
(key pairs are made by libzmq's ``curve_keypair``, which opens none)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
import zmq.auth

from catbus import security
from catbus.errors import ConfigError
from catbus.security import keys as keyfiles

pytestmark = pytest.mark.unit


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "keys"
    security.generate(root, {"hostb": ["probe", "robot"], "other": ["other"]})
    return root


def test_generate_writes_owner_only_certificates_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        done = security.generate(tmp_path / "keys", {"hostb": ["probe"]})
    finally:
        os.umask(old)
    root = tmp_path / "keys"
    assert done["allow"] == {"local": ["*"], "hostb": ["probe"]}
    assert sorted(Path(p).relative_to(root).as_posix() for p in done["created"]) == \
        ["bus.key", "bus.key_secret", "client.key", "client.key_secret",
         "clients/hostb/client.key", "clients/hostb/client.key_secret"]
    for path in [root, *root.rglob("*")]:
        assert mode_of(path) == (0o700 if path.is_dir() else 0o600), path
    # ZeroMQ certificates: the public file has no secret, the secret file both keys.
    public, secret = zmq.auth.load_certificate(root / "bus.key")
    assert len(public) == 40 and secret is None
    assert zmq.auth.load_certificate(root / "bus.key_secret")[0] == public
    assert zmq.auth.load_certificate(root / "clients" / "hostb" / "bus.key")[0] == public
    assert not list(root.rglob("*.tmp"))


def test_generate_again_keeps_keys_and_adds_names(folder: Path) -> None:
    before = security.load_keys(folder)
    done = security.generate(folder, {"hostb": ["env"], "simhost": ["sim"]})
    after = security.load_keys(folder)
    assert (after.public, after.secret, after.bus_public, after.bus_secret) == \
        (before.public, before.secret, before.bus_public, before.bus_secret)
    assert done["allow"]["hostb"] == ["env", "probe", "robot"]
    assert [Path(p).parent.name for p in done["created"]] == ["simhost", "simhost"]
    hostb = security.load_keys(folder / "clients" / "hostb")
    assert after.allowed[hostb.public] == ("hostb", frozenset({"env", "probe", "robot"}))
    assert after.client_of(hostb.public) == "hostb" and after.client_of(b"x" * 40) == "?"


@pytest.mark.parametrize("client", ["", "local", "a/b", "with space"])
def test_generate_refuses_a_client_name_that_is_not_a_folder_name(tmp_path: Path,
                                                                    client: str) -> None:
    with pytest.raises(ConfigError, match="is not a usable client name"):
        security.generate(tmp_path / "keys", {client: ["probe"]})


def test_load_keys_tells_a_host_folder_from_a_client_folder(folder: Path) -> None:
    top = security.load_keys(folder)
    client = security.load_keys(folder / "clients" / "hostb")
    assert top.can_host and not client.can_host and client.allowed is None
    assert client.bus_public == top.bus_public and client.public != top.public
    assert top.allowed[top.public] == ("local", frozenset({"*"}))
    assert top.client_for_node("robot") == "hostb" and top.client_for_node("talker") is None


def test_load_keys_refusals_are_one_line_each(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such keys folder"):
        security.load_keys(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"not a catbus keys folder \(missing bus.key, "
                                          r"client.key, client.key_secret\)"):
        security.load_keys(tmp_path / "empty")
    os.chmod(folder / "bus.key_secret", 0o640)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0640\).*chmod 600"):
        security.load_keys(folder)
    os.chmod(folder / "bus.key_secret", 0o600)
    (folder / "allow.yaml").write_text("clients: [1]\n")
    with pytest.raises(ConfigError, match="clients: must be a mapping"):
        security.load_keys(folder)


def test_the_allow_list_is_checked_entry_by_entry() -> None:
    key = "k" * 40
    good = {"clients": {"local": {"key": key, "nodes": ["*"]}, "b": {"key": key, "nodes": []}}}
    assert keyfiles.parse_allow(good, "allow.yaml") == good["clients"]
    for data, field in [(None, "clients"), ({"clients": []}, "clients"),
                        ({"clients": {"b": {"key": "short", "nodes": []}}}, "clients.b"),
                        ({"clients": {"b": {"key": key, "nodes": "probe"}}}, "clients.b"),
                        ({"clients": {"b": {"key": key, "nodes": [1]}}}, "clients.b"),
                        ({"clients": {"b": {"key": key}}}, "clients.b")]:
        with pytest.raises(ConfigError) as raised:
            keyfiles.parse_allow(data, "allow.yaml")
        assert raised.value.field == field, data
    assert keyfiles.allow_list(good["clients"]) == {key.encode(): ("b", frozenset())}


def test_allow_text_round_trips(tmp_path: Path) -> None:
    allow = {"local": {"key": "a" * 40, "nodes": ["*"]}, "b": {"key": "b" * 40, "nodes": ["x"]}}
    text = keyfiles.allow_text(allow)
    assert text.startswith("# catbus allow-list:") and yaml.safe_load(text) == {"clients": allow}
    keyfiles.write_private(tmp_path / "allow.yaml", text)
    assert keyfiles.read_allow(tmp_path / "allow.yaml") == allow
    assert mode_of(tmp_path / "allow.yaml") == 0o600


def test_keys_are_used_on_tcp_only(folder: Path) -> None:
    keys = security.load_keys(folder)
    assert security.for_bus(keys, "tcp://10.0.0.1:7700") is keys
    assert security.for_bus(keys, "ipc:///tmp/x") is None
    assert security.for_bus(None, "tcp://10.0.0.1:7700") is None
    assert security.host_keys(folder, "ipc", "run.yaml") is None
    assert security.host_keys(None, "tcp://10.0.0.1:7700", "run.yaml") is None
    assert security.host_keys(folder, "tcp://10.0.0.1:7700", "run.yaml") == keys
    with pytest.raises(ConfigError, match=r"run.yaml: security.keys: .* is a client folder \(no "
                                          r"bus.key_secret or allow.yaml\)"):
        security.host_keys(folder / "clients" / "hostb", "tcp://10.0.0.1:7700", "run.yaml")
    assert security.load_option(None) is None and security.load_option(folder) == keys


def test_what_the_host_says_about_keys(folder: Path, capsys: pytest.CaptureFixture) -> None:
    keys = security.load_keys(folder)
    assert security.node_option(None, "probe") == ""
    assert security.node_option(keys, "probe") == f" --keys {folder / 'clients' / 'hostb'}"
    assert security.node_option(keys, "talker") == " --keys CLIENT_DIR"
    assert security.run_info(None) == {}
    assert security.run_info(keys) == {"clients": sorted(k.decode() for k in keys.allowed)}
    security.announce("tcp://1.2.3.4:5", None)
    security.announce("tcp://1.2.3.4:5", keys, folder)
    security.announce("ipc", None, folder)
    security.announce("ipc", None)
    assert capsys.readouterr().err.splitlines() == [
        security.open_bus_warning("tcp://1.2.3.4:5"),
        f"catbus: security: keys {folder} not used: the bus is ipc (private to this user)"]
    assert security.short(b"ABCDEFGHIJKL") == security.short("ABCDEFGHIJKL") == "ABCDEFGH..."
