"""Selector settings: validated at start-up, errors name the setting, flags and env agree."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flctl.main import accepted_env_vars, build_parser
from flctl.roles.selector import config_from_args
from flproc.errors import SettingError
from services.selector.config import SETTINGS, EligibilityPolicy, SelectorConfig

pytestmark = pytest.mark.unit

GOOD = SelectorConfig(token_secret=b"secret")


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("token_secret", b"", "non-empty secret"),
        ("retry_jitter_ms", -1, "must be an integer >= 0, got -1"),
        ("min_backoff_ms", 0, "must be an integer > 0, got 0"),
        ("no_round_retry_ms", 0, "must be an integer > 0, got 0"),
        ("selection_cutoff_ms", -5, "must be an integer >= 0, got -5"),
        ("share_group", "$share/x", "plain id"),
        ("workers", 0, "must be an integer > 0, got 0"),
        ("stats_interval_s", float("nan"), "must be a number > 0, got nan"),
    ],
)
def test_selector_config_bad_setting_is_named_with_its_range(
    setting: str, value: Any, problem: str
) -> None:
    with pytest.raises(SettingError) as err:
        dataclasses.replace(GOOD, **{setting: value})
    assert err.value.setting == setting and problem in err.value.problem
    assert any(s.fills(setting) for s in SETTINGS)


def test_selector_eligibility_policy_parse_and_unknown_fact() -> None:
    assert EligibilityPolicy.parse("charging, idle").require == {"charging", "idle"}
    assert EligibilityPolicy.parse("none").require == frozenset()
    with pytest.raises(SettingError, match="eligibility"):
        EligibilityPolicy.parse("charging,sunny")
    with pytest.raises(SettingError, match=r"min_battery_pct: must be a number in \[0, 100\]"):
        EligibilityPolicy(min_battery_pct=120.0)


def test_selector_config_repr_hides_the_token_secret() -> None:
    config = SelectorConfig(token_secret=b"hunter2-secret")
    assert "hunter2" not in repr(config) and "hunter2" not in str(config)


def test_selector_cli_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FL_TOKEN_SECRET", "from-env")
    monkeypatch.setenv("FL_SELECTOR_SHARE_GROUP", "edge2")
    monkeypatch.setenv("FL_ELIGIBILITY", "charging")
    monkeypatch.setenv("FL_MIN_BATTERY_PCT", "20")
    args = build_parser().parse_args(["selector", "--retry-jitter-ms", "5"])
    config = config_from_args(args)
    assert config.token_secret == b"from-env" and config.share_group == "edge2"
    assert config.eligibility.require == {"charging"} and config.retry_jitter_ms == 5
    assert config.eligibility.min_battery_pct == 20.0
    assert {"FL_TOKEN_SECRET", "FL_SELECTOR_SHARE_GROUP"} <= accepted_env_vars()


def test_selector_cli_without_secret_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FL_TOKEN_SECRET", raising=False)
    args = build_parser().parse_args(["selector", "--log-format", "console"])
    assert args.handler(args) == 2
    assert "--token-secret / FL_TOKEN_SECRET: is required" in capsys.readouterr().err
