"""Aggregator settings are validated at start-up and name the bad setting; flctl wires them."""

from __future__ import annotations

import pytest

from flctl.main import accepted_env_vars, build_parser
from flctl.roles.aggregator import config_from_args
from flproc.errors import SettingError
from services.aggregator.config import AggregatorConfig

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("kwargs", "field", "problem"),
    [
        ({"hospital": "h/0"}, "hospital", "must be 1-64 chars"),
        ({"hospital": ""}, "hospital", "must be 1-64 chars"),
        ({"token_secret": b""}, "token_secret", "non-empty secret"),
        ({"kafka_bootstrap": "localhost"}, "kafka_bootstrap", "host:port"),
        ({"tick_ms": 0}, "tick_ms", "must be an integer >= 1, got 0"),
        ({"group": "a b"}, "group", "[A-Za-z0-9._-]"),
        ({"stream_timeout_ms": -1}, "stream_timeout_ms", "must be an integer >= 1, got -1"),
        ({"park_limit": 1.5}, "park_limit", "must be an integer >= 0, got 1.5"),
    ],
)
def test_aggregator_config_bad_setting_names_the_field_and_the_range(
    kwargs: dict[str, object], field: str, problem: str
) -> None:
    settings: dict[str, object] = {"hospital": "h0", "token_secret": b"s"} | kwargs
    with pytest.raises(SettingError) as err:
        AggregatorConfig(**settings)  # type: ignore[arg-type]
    assert err.value.setting == field
    assert problem in err.value.problem


def test_aggregator_config_defaults_group_to_hospital() -> None:
    config = AggregatorConfig(hospital="h3", token_secret=b"s", kafka_bootstrap="a:1,b:2")
    assert config.consumer_group == "aggregator.h3"
    assert config.tick_ms == 50


def test_aggregator_config_repr_hides_the_token_secret() -> None:
    config = AggregatorConfig(hospital="h3", token_secret=b"hunter2-secret")
    assert "hunter2" not in repr(config) and "hunter2" not in str(config)


def test_aggregator_cli_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FL_HOSPITAL", "h7")
    monkeypatch.setenv("FL_TOKEN_SECRET", "topsecret")
    monkeypatch.setenv("FL_AGGREGATOR_TICK_MS", "20")
    args = build_parser().parse_args(["aggregator", "--kafka-bootstrap", "k:9093"])
    config = config_from_args(args)
    assert (config.hospital, config.token_secret, config.tick_ms) == ("h7", b"topsecret", 20)
    assert config.kafka_bootstrap == "k:9093"
    assert {"FL_HOSPITAL", "FL_TOKEN_SECRET", "FL_AGGREGATOR_TICK_MS"} <= accepted_env_vars()


def test_aggregator_cli_without_hospital_exits_2_naming_flag_and_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FL_HOSPITAL", raising=False)
    args = build_parser().parse_args(["aggregator", "--token-secret", "s"])
    assert args.handler(args) == 2
    assert "flctl aggregator: --hospital / FL_HOSPITAL: is required" in capsys.readouterr().err
