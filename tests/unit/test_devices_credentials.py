"""``flctl devices --credentials``: each simulated device connects as itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.provision import provision
from flctl.provision.credentials import read_credentials, with_credentials
from flctl.roles.devices import credentialed
from flproc.errors import SettingError
from flsim.partition import DeviceShard, Partition

pytestmark = pytest.mark.unit


def _split(hospitals: int, per: int) -> dict[str, Partition]:
    shards = tuple(
        DeviceShard(f"h{h}", f"h{h}-d{d}", (h * per + d,))
        for h in range(hospitals)
        for d in range(per)
    )
    return {"m": Partition("digits", (99,), shards)}


def test_hand_out_runs_only_its_hospitals_devices_each_with_its_own_url(tmp_path: Path) -> None:
    out = provision(tmp_path / "s", ("h0", "h1"), 2).out
    creds = read_credentials([out / "devices" / "h1.csv"])
    kept = credentialed(_split(2, 2), creds)
    assert [s.device for s in kept["m"].devices] == ["h1-d0", "h1-d1"]
    url = with_credentials("mqtt://broker:1883", creds["h1-d0"].username, creds["h1-d0"].password)
    assert url == f"mqtt://h1.h1-d0:{creds['h1-d0'].password}@broker:1883"
    assert "password" not in repr(creds)  # a credential's repr hides it
    assert creds["h1-d0"].password not in repr(creds)


def test_without_credentials_the_whole_split_runs() -> None:
    split = _split(2, 2)
    assert credentialed(split, None) is split


def test_hand_out_for_another_split_is_a_setting_error(tmp_path: Path) -> None:
    out = provision(tmp_path / "s", ("h0", "h1"), 3).out
    creds = read_credentials([out / "devices" / "h1.csv"])
    with pytest.raises(SettingError, match="h1-d2 are not in the split"):
        credentialed(_split(2, 2), creds)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("device,user,pw\nh0-d0,u,p\n", "first line must be"),
        ("device_id,username,password\nh0-d0,u\n", ":2: expected 3 non-empty fields"),
        (
            "device_id,username,password\nh0-d0,u,p\nh0-d0,u,q\n",
            ":3: device 'h0-d0' is listed twice",
        ),
        ("device_id,username,password\nh0-d0,u,\n", "expected 3 non-empty fields"),
    ],
)
def test_malformed_hand_outs_are_refused_naming_the_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    p = tmp_path / "h0.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=problem):
        read_credentials([p])


def test_missing_hand_out_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        read_credentials([tmp_path / "nope.csv"])
