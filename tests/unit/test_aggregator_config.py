"""Aggregator settings are validated at start-up and name the bad setting; flctl wires them."""

from __future__ import annotations

import pytest

from flctl.main import accepted_env_vars, build_parser
from flctl.roles.aggregator import config_from_args
from services.aggregator.config import AggregatorConfig
from services.aggregator.errors import SettingError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"hospital": "h/0"}, "FL_HOSPITAL"),
        ({"hospital": ""}, "FL_HOSPITAL"),
        ({"token_secret": b""}, "FL_TOKEN_SECRET"),
        ({"kafka_bootstrap": "localhost"}, "FL_KAFKA_BOOTSTRAP"),
        ({"tick_ms": 0}, "FL_AGGREGATOR_TICK_MS"),
        ({"group": "a b"}, "FL_AGGREGATOR_GROUP"),
        ({"stream_timeout_ms": -1}, "FL_AGGREGATOR_STREAM_TIMEOUT_MS"),
    ],
)
def test_aggregator_config_bad_setting_is_named(kwargs: dict[str, object], named: str) -> None:
    settings: dict[str, object] = {"hospital": "h0", "token_secret": b"s"} | kwargs
    with pytest.raises(SettingError, match=named):
        AggregatorConfig(**settings)  # type: ignore[arg-type]


def test_aggregator_config_defaults_group_to_hospital() -> None:
    config = AggregatorConfig(hospital="h3", token_secret=b"s", kafka_bootstrap="a:1,b:2")
    assert config.consumer_group == "aggregator.h3"
    assert config.tick_ms == 50


def test_aggregator_cli_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FL_HOSPITAL", "h7")
    monkeypatch.setenv("FL_TOKEN_SECRET", "topsecret")
    monkeypatch.setenv("FL_AGGREGATOR_TICK_MS", "20")
    args = build_parser().parse_args(["aggregator", "--kafka-bootstrap", "k:9093"])
    config = config_from_args(args)
    assert (config.hospital, config.token_secret, config.tick_ms) == ("h7", b"topsecret", 20)
    assert config.kafka_bootstrap == "k:9093"
    assert {"FL_HOSPITAL", "FL_TOKEN_SECRET", "FL_AGGREGATOR_TICK_MS"} <= accepted_env_vars()


def test_aggregator_cli_without_hospital_exits_with_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FL_HOSPITAL", raising=False)
    args = build_parser().parse_args(["aggregator", "--token-secret", "s"])
    assert args.handler(args) == 2
    assert "FL_HOSPITAL" in capsys.readouterr().err
