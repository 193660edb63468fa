"""``flctl provision``: what it writes, with which modes, and what it refuses to do."""

from __future__ import annotations

import base64
import csv
import hashlib
import stat
from itertools import count
from pathlib import Path

import pytest

from flctl.main import main
from flctl.provision import WRITERS, ProvisionError, Written, provision
from flctl.provision.credentials import read_credentials

pytestmark = pytest.mark.unit


def _secrets() -> object:
    n = count()
    return lambda: f"secret-{next(n):04d}-xxxxxxxxxxxx"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _written(tmp_path: Path, **kw: object) -> Path:
    return provision(
        tmp_path / "secrets",
        ("h0", "h1"),
        2,
        new_secret=_secrets(),
        **kw,  # type: ignore[arg-type]
    ).out


def test_provision_keeps_secrets_private(tmp_path: Path) -> None:
    out = _written(tmp_path, tls=True)
    files = [p for p in out.rglob("*") if p.is_file()]
    dirs = [out, *(p for p in out.rglob("*") if p.is_dir())]
    assert {d.name for d in dirs} == {
        *("secrets", "mosquitto", "services", "devices", "tls", "kafka", "signing")
    }
    assert all(_mode(d) == 0o700 for d in dirs)
    public = {"ca.pem", "server.pem", "coordinator.pub"}
    assert {p.name: _mode(p) for p in files if p.name in public} == dict.fromkeys(public, 0o644)
    assert all(_mode(p) == 0o600 for p in files if p.name not in public)
    tls = {"ca.pem", "ca.key", "server.pem", "server.key"}
    assert {p.name for p in (out / "tls").iterdir()} == tls


def test_provision_refuses_an_existing_directory_without_force(tmp_path: Path) -> None:
    out = _written(tmp_path)
    before = (out / "mosquitto" / "passwd").read_text()
    with pytest.raises(ProvisionError, match="--force"):
        _written(tmp_path)
    assert (out / "mosquitto" / "passwd").read_text() == before
    provision(out, ("h0",), 1, force=True)
    assert (out / "mosquitto" / "passwd").read_text() != before
    assert sorted(p.name for p in (out / "devices").iterdir()) == ["h0.csv"]  # no stale h1


def test_force_never_deletes_a_directory_provision_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "secrets"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ProvisionError, match="not written by flctl provision"):
        provision(mine, ("h0",), 1, force=True)
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_acl_confines_each_device_and_grants_the_selectors(tmp_path: Path) -> None:
    acl = (_written(tmp_path) / "mosquitto" / "acl").read_text()
    lines = [x for x in acl.splitlines() if x and not x.startswith("#")]
    assert lines[0] == "user selector"  # no topic line before a user line: anonymous gets none
    blocks = [
        b.splitlines() for b in "\n".join(lines).replace("\nuser ", "\n\nuser ").split("\n\n")
    ]
    by_user = {b[0]: b for b in blocks}
    assert by_user["user h1.h1-d1"] == [
        "user h1.h1-d1",
        "topic write fl/v1/h1/h1-d1/checkin",
        "topic write fl/v1/h1/h1-d1/upload",
        "topic write fl/v1/h1/h1-d1/eval",
        "topic read fl/v1/h1/h1-d1/task",
        "topic read fl/v1/models/#",
    ]
    assert by_user["user selector"] == [
        "user selector",
        "topic write fl/v1/+/+/task",
        "topic read fl/v1/+/+/checkin",
        "topic read fl/v1/+/+/upload",
        "topic read fl/v1/+/+/eval",
        "topic readwrite fl/v1/models/#",
    ]
    assert len(blocks) == 1 + 4


def test_password_file_holds_mosquitto_hashes_of_the_handed_out_passwords(
    tmp_path: Path,
) -> None:
    out = _written(tmp_path)
    creds = read_credentials([out / "devices" / "h0.csv", out / "devices" / "h1.csv"])
    assert sorted(creds) == ["h0-d0", "h0-d1", "h1-d0", "h1-d1"]
    lines = dict(x.split(":", 1) for x in (out / "mosquitto" / "passwd").read_text().splitlines())
    assert set(lines) == {"selector", *(c.username for c in creds.values())}
    for cred in creds.values():
        _, seven, iterations, salt, digest = lines[cred.username].split("$")
        assert seven == "7"
        again = hashlib.pbkdf2_hmac(
            "sha512", cred.password.encode(), base64.b64decode(salt), int(iterations)
        )
        assert base64.b64decode(digest) == again
    assert "secret-" not in (out / "mosquitto" / "passwd").read_text()


def test_env_files_give_each_instance_its_identity(tmp_path: Path) -> None:
    out = _written(tmp_path, mqtt_url="mqtt://broker.h:1883")
    env = {p.stem: p.read_text().splitlines() for p in (out / "services").iterdir()}
    assert sorted(env) == sorted(
        ["coordinator", "selector", "aggregator-h0", "aggregator-h1", "devices-h0", "devices-h1"]
    )
    selector_pw = next(x for x in (out / "mosquitto" / "passwd").read_text().splitlines())
    assert selector_pw.startswith("selector:")
    (url,) = [x for x in env["selector"] if x.startswith("FL_MQTT_URL=")]
    assert url.startswith("FL_MQTT_URL=mqtt://selector:secret-") and url.endswith("@broker.h:1883")
    assert f"FL_DEVICE_CREDENTIALS={out / 'devices' / 'h1.csv'}" in env["devices-h1"]
    assert "FL_MQTT_URL=mqtt://broker.h:1883" in env["devices-h1"]
    assert "FL_HOSPITAL=h0" in env["aggregator-h0"]
    assert all("FL_HOSPITALS=h0,h1" in lines for lines in env.values())
    # Nothing but FL_NAME=value lines: `env $(cat services/x.env)` and compose both read them.
    assert all(x.startswith("FL_") and " " not in x for lines in env.values() for x in lines)
    tokens = {i: [x for x in lines if x.startswith("FL_TOKEN_SECRET=")] for i, lines in env.items()}
    shared = {*tokens["selector"], *tokens["aggregator-h0"], *tokens["aggregator-h1"]}
    assert len(shared) == 1  # the selector signs admission tokens the aggregators check
    assert tokens["coordinator"] == tokens["devices-h0"] == []


def test_a_failing_writer_leaves_no_half_written_directory(tmp_path: Path) -> None:
    def clashing(d: object) -> Written:
        return Written({"selector": ["FL_MQTT_URL=mqtt://elsewhere:1883"]})

    with pytest.raises(ProvisionError, match="FL_MQTT_URL is set twice"):
        provision(tmp_path / "secrets", ("h0",), 1, writers=[*WRITERS, clashing])
    assert not (tmp_path / "secrets").exists()


def test_provision_refuses_a_root_an_env_file_cannot_carry(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="FL_DEVICE_CREDENTIALS would need quoting"):
        provision(tmp_path / "secrets", ("h0",), 1, root=Path("/my secrets"))
    assert not (tmp_path / "secrets").exists()


def test_provision_rejects_ids_that_cannot_go_into_a_topic(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="hospital"):
        provision(tmp_path / "secrets", ("h0", "h.1"), 1)
    assert not (tmp_path / "secrets").exists()


def test_cli_summary_names_files_never_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_fl_env: None
) -> None:
    out = tmp_path / "secrets"
    args = ["provision", "--out", str(out), "--hospitals", "h0,h1", "--devices-per-hospital", "3"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "flctl brokers up --secure" in printed.out
    for h in ("h0", "h1"):  # what each hospital is handed: its aggregator, devices, the key
        (line,) = [x for x in printed.out.splitlines() if x.strip().startswith(f"hospital {h}:")]
        for handout in (f"services/aggregator-{h}.env", f"devices/{h}.csv", "coordinator.pub"):
            assert handout in line, line
    (device,) = [x for x in printed.out.splitlines() if x.strip().startswith("each device:")]
    assert "own row" in device and "signing/coordinator.pub" in device
    with open(out / "devices" / "h1.csv", newline="") as f:
        passwords = [row["password"] for row in csv.DictReader(f)]
    assert len(passwords) == 3
    assert not any(pw in printed.out + printed.err for pw in passwords)
    assert main(args) == 1
    assert "exists" in capsys.readouterr().err
