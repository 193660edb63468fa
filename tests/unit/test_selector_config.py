"""Selector settings: validated at start-up, errors name the setting, flags and env agree."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flctl.main import accepted_env_vars, build_parser
from flctl.roles.selector import SETTINGS, config_from_args
from services.selector.config import EligibilityPolicy, SelectorConfig
from services.selector.errors import SelectorConfigError

pytestmark = pytest.mark.unit

GOOD = SelectorConfig(token_secret=b"secret")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("token_secret", b""),
        ("retry_jitter_ms", -1),
        ("min_backoff_ms", 0),
        ("no_round_retry_ms", 0),
        ("selection_cutoff_ms", -5),
        ("share_group", "$share/x"),
        ("workers", 0),
        ("stats_interval_s", float("nan")),
    ],
)
def test_selector_config_bad_setting_is_named(setting: str, value: Any) -> None:
    with pytest.raises(SelectorConfigError) as err:
        dataclasses.replace(GOOD, **{setting: value})
    assert err.value.setting == setting and setting in str(err.value)
    assert setting in SETTINGS


def test_selector_eligibility_policy_parse_and_unknown_fact() -> None:
    assert EligibilityPolicy.parse("charging, idle").require == {"charging", "idle"}
    assert EligibilityPolicy.parse("none").require == frozenset()
    with pytest.raises(SelectorConfigError, match="eligibility"):
        EligibilityPolicy.parse("charging,sunny")
    with pytest.raises(SelectorConfigError, match="min_battery_pct"):
        EligibilityPolicy(min_battery_pct=120.0)


def test_selector_cli_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FL_TOKEN_SECRET", "from-env")
    monkeypatch.setenv("FL_SELECTOR_SHARE_GROUP", "edge2")
    monkeypatch.setenv("FL_ELIGIBILITY", "charging")
    args = build_parser().parse_args(["selector", "--retry-jitter-ms", "5"])
    config = config_from_args(args)
    assert config.token_secret == b"from-env" and config.share_group == "edge2"
    assert config.eligibility.require == {"charging"} and config.retry_jitter_ms == 5
    assert {"FL_TOKEN_SECRET", "FL_SELECTOR_SHARE_GROUP"} <= accepted_env_vars()


def test_selector_cli_without_secret_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FL_TOKEN_SECRET", raising=False)
    args = build_parser().parse_args(["selector", "--log-format", "console"])
    assert args.handler(args) == 2
