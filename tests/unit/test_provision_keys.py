"""flctl provision's keys: the coordinator's signing pair, where env files say they are."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from flctl.main import main
from flctl.provision import ProvisionError, provision
from flproc.keys import coordinator_key_file, signing_key_file
from tests.support.device import plan

pytestmark = pytest.mark.unit


def _env(out: Path, instance: str) -> dict[str, str]:
    lines = (out / "services" / f"{instance}.env").read_text().splitlines()
    return dict(x.split("=", 1) for x in lines)


def test_provision_signing_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    out = provision(tmp_path / "secrets", ("h0", "h1"), 1).out

    key = Path(_env(out, "coordinator")["FL_SIGNING_KEY"])
    assert key == out / "signing" / "coordinator.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert all("FL_SIGNING_KEY" not in _env(out, i) for i in ("selector", "devices-h0"))
    # What the coordinator signs with, the devices' pinned key accepts.
    signer = signing_key_file(str(key))
    pinned = coordinator_key_file(_env(out, "devices-h1")["FL_COORDINATOR_KEY"])
    assert pinned.verify(signer.sign(plan(1))) is None


def test_env_files_name_paths_under_root_where_the_roles_read_them(tmp_path: Path) -> None:
    out = provision(tmp_path / "secrets", ("h0",), 1, root=Path("/secrets")).out

    assert _env(out, "coordinator")["FL_SIGNING_KEY"] == "/secrets/signing/coordinator.key"
    devices = _env(out, "devices-h0")
    assert devices["FL_COORDINATOR_KEY"] == "/secrets/signing/coordinator.pub"
    assert devices["FL_DEVICE_CREDENTIALS"] == "/secrets/devices/h0.csv"
    assert (out / "signing" / "coordinator.pub").is_file()
    with pytest.raises(ProvisionError, match="absolute"):
        provision(tmp_path / "other", ("h0",), 1, root=Path("secrets"))


def test_signing_key_setting_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    out = provision(tmp_path / "secrets", ("h0",), 1).out
    key = Path(_env(out, "coordinator")["FL_SIGNING_KEY"])
    key.chmod(0o644)

    with pytest.raises(ValueError, match="readable by others"):
        signing_key_file(str(key))
    with pytest.raises(ValueError, match="cannot read"):
        coordinator_key_file(str(tmp_path / "missing.pub"))


@pytest.mark.usefixtures("no_fl_env")
@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["coordinator"], "--signing-key / FL_SIGNING_KEY: is required"),
        (["devices"], "--coordinator-key / FL_COORDINATOR_KEY: is required"),
    ],
)
def test_roles_refuse_to_start_without_their_key(
    argv: list[str], named: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("flproc.startup.prepare_process", lambda **_: None)

    assert main(argv) == 2

    assert named in capsys.readouterr().err
