"""The settings registry: one declaration serves flags, FL_* variables, --help and errors."""

from __future__ import annotations

import argparse

import pytest

from flproc.errors import SettingError
from flproc.parsers import Range, integer, mqtt_url, number, secret_bytes
from flproc.settings import Setting, add_settings, amend, explain, resolve

pytestmark = pytest.mark.unit

TICK = Setting("tick_ms", "--tick-ms", "FL_TEST_TICK_MS", "how often (ms)", integer(Range(1)), "50")
SHARE = Setting("share", "--share", "FL_TEST_SHARE", "a share", number(Range(0, 1)), "0.5",
                also=("other_share",))  # fmt: skip
SECRET = Setting("token", "--token", "FL_TEST_TOKEN", "the secret", secret_bytes, secret=True,
                 required=True)  # fmt: skip
FORMAT = Setting("fmt", "--fmt", "FL_TEST_FMT", "format", default="json",
                 choices=("json", "console"))  # fmt: skip
URL = Setting("url", "--url", "FL_TEST_URL", "broker", mqtt_url, "mqtt://127.0.0.1:1883")
ALL = (TICK, SHARE, SECRET, FORMAT, URL)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_settings(parser, ALL)
    return parser


def _resolve(argv: list[str], env: dict[str, str]) -> dict[str, object]:
    return resolve(_parser().parse_args(argv), ALL, environ={"FL_TEST_TOKEN": "s"} | env)


def test_settings_flag_beats_env_beats_default() -> None:
    assert _resolve([], {})["tick_ms"] == 50
    assert _resolve([], {"FL_TEST_TICK_MS": "20"})["tick_ms"] == 20
    assert _resolve(["--tick-ms", "7"], {"FL_TEST_TICK_MS": "20"})["tick_ms"] == 7


def test_settings_empty_env_counts_as_unset() -> None:
    assert _resolve([], {"FL_TEST_TICK_MS": ""})["tick_ms"] == 50


def test_settings_one_value_fills_every_field_it_names() -> None:
    values = _resolve(["--share", "0.25"], {})
    assert values["share"] == values["other_share"] == 0.25


def test_settings_bad_env_value_names_the_variable_the_flag_and_the_range() -> None:
    with pytest.raises(SettingError) as err:
        _resolve([], {"FL_TEST_TICK_MS": "0"})
    assert err.value.setting == "tick_ms"
    assert explain(err.value, ALL) == "--tick-ms / FL_TEST_TICK_MS: must be an integer >= 1, got 0"


def test_settings_text_where_a_number_belongs_says_the_range() -> None:
    with pytest.raises(SettingError) as err:
        _resolve(["--share", "half"], {})
    assert (
        explain(err.value, ALL) == "--share / FL_TEST_SHARE: must be a number in [0, 1], got 'half'"
    )


def test_settings_choice_outside_the_list_names_the_choices() -> None:
    with pytest.raises(SettingError, match="must be one of json, console, got 'xml'"):
        _resolve([], {"FL_TEST_FMT": "xml"})


def test_settings_missing_required_setting_is_named() -> None:
    with pytest.raises(SettingError) as err:
        resolve(_parser().parse_args([]), ALL, environ={})
    assert explain(err.value, ALL) == "--token / FL_TEST_TOKEN: is required"


def test_settings_error_never_shows_a_url_password() -> None:
    with pytest.raises(SettingError) as err:
        _resolve(["--url", "http://alice:hunter2@broker:1883"], {})
    assert "hunter2" not in str(err.value) and "alice:***@broker" in str(err.value)


def test_settings_error_never_shows_a_secret_value() -> None:
    def picky(raw: str) -> bytes:
        raise ValueError(f"too short: {raw}")

    secret = SECRET.but(parse=picky)
    with pytest.raises(SettingError) as err:
        resolve(argparse.Namespace(token="hunter2"), (secret,), environ={})
    assert "hunter2" not in str(err.value)


def test_settings_help_ends_with_variable_and_default() -> None:
    assert TICK.help_text() == "how often (ms) [env FL_TEST_TICK_MS; default: 50]"
    assert SECRET.help_text() == "the secret [env FL_TEST_TOKEN; required]"
    text = _parser().format_help()
    for setting in ALL:
        assert setting.env in text and setting.flag in text


def test_settings_amend_changes_one_command_default_only() -> None:
    amended = amend(ALL, "tick_ms", default="10")
    assert amended[0].default == "10" and TICK.default == "50" and amended[1:] == ALL[1:]
    with pytest.raises(KeyError):
        amend(ALL, "nope", default="1")


def test_settings_declaration_refuses_a_secret_with_a_default() -> None:
    with pytest.raises(ValueError, match="secret"):
        SECRET.but(default="insecure")


@pytest.mark.parametrize(
    ("within", "text"),
    [
        (Range(0, 1, low_open=True), "a number in (0, 1]"),
        (Range(1, integer=True), "an integer >= 1"),
        (Range(0, low_open=True), "a number > 0"),
        (Range(high=5, high_open=True), "a number < 5"),
        (Range(), "a number"),
    ],
)
def test_range_says_what_it_accepts(within: Range, text: str) -> None:
    assert str(within) == text


def test_range_refuses_bools_nan_and_fractions_of_integers() -> None:
    whole = Range(0, integer=True)
    assert whole.holds(3) and not whole.holds(True) and not whole.holds(1.5)
    assert not Range().holds(float("nan")) and not Range().holds(float("inf"))
