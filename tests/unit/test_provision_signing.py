"""flctl.provision_signing: the key pair a deployment's coordinator signs with."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from flctl.main import main
from flctl.provision_signing import write_signing
from flproc.keys import coordinator_key_file, signing_key_file
from tests.support.device import plan

pytestmark = pytest.mark.unit


def test_provision_signing_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    envs = write_signing(tmp_path, ("h0", "h1"))

    key = Path(envs["coordinator"]["FL_SIGNING_KEY"])
    assert key == tmp_path.resolve() / "signing" / "coordinator.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert set(envs) == {"coordinator", "devices-h0", "devices-h1"}
    # What the coordinator signs with, the devices' pinned key accepts.
    signer = signing_key_file(str(key))
    pinned = coordinator_key_file(envs["devices-h1"]["FL_COORDINATOR_KEY"])
    assert pinned.verify(signer.sign(plan(1))) is None


def test_provision_signing_run_again_keeps_the_key_devices_pinned(tmp_path: Path) -> None:
    first = write_signing(tmp_path)
    pub = Path(first["devices-h0"]["FL_COORDINATOR_KEY"]).read_bytes()

    write_signing(tmp_path)

    assert Path(first["devices-h0"]["FL_COORDINATOR_KEY"]).read_bytes() == pub


def test_signing_key_setting_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    key = Path(write_signing(tmp_path)["coordinator"]["FL_SIGNING_KEY"])
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
