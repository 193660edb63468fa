"""flctl demo refuses bad input with exit code 2 and a message naming the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flbus.errors import BrokerUnavailableError
from flctl.demo_cli import options_from_args
from flctl.main import build_parser, main
from flctl.roles.coordinator import config_from_args as coordinator_config
from tests.support.signing import write_private_key

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("no_fl_env")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "nope"], "--models / FL_MODELS: no zoo model named 'nope'"),
        (["--rounds", "0"], "--rounds / FL_ROUNDS: must be an integer >= 1, got 0"),
        (["--dropout", "2"], "--dropout / FL_DROPOUT: must be a number in [0, 1], got 2.0"),
        (["--fraction", "2"], "--fraction / FL_FRACTION: must be a number in (0, 1], got 2.0"),
        (["--lr", "x"], "--lr / FL_LR: must be a number > 0, got 'x'"),
        (["--server-optimizer", "adam"], "FL_SERVER_OPTIMIZER: must be one of fedavg, "),
        (["--partition", "/nonexistent/split.json"], "No such file"),
        (["--mqtt", "mqtt://127.0.0.1:1"], "external brokers need both --mqtt and --kafka"),
    ],
)
def test_demo_bad_input_exits_2_naming_it(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_demo_bad_environment_value_names_variable_and_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FL_DEVICES_PER_HOSPITAL", "0")
    assert main(["demo"]) == 2
    assert (
        "flctl demo: --devices-per-hospital / FL_DEVICES_PER_HOSPITAL: must be an integer >= 1"
        in (capsys.readouterr().err)
    )


def test_demo_unreachable_broker_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def unreachable(*_: object, **__: object) -> None:
        raise ExceptionGroup(
            "roles", [BrokerUnavailableError("no Kafka broker answered at 127.0.0.1:2 within 15s")]
        )

    monkeypatch.setattr("flctl.demo.run_demo", unreachable)
    assert main(["demo", "--mqtt", "mqtt://127.0.0.1:1", "--kafka", "127.0.0.1:2"]) == 1
    err = capsys.readouterr().err
    assert err == "flctl demo: no Kafka broker answered at 127.0.0.1:2 within 15s\n"


def test_demo_and_coordinator_default_to_one_server_optimizer(tmp_path: Path) -> None:
    parser = build_parser()
    demo = options_from_args(parser.parse_args(["demo"]))
    key = str(write_private_key(tmp_path))
    coordinator = coordinator_config(parser.parse_args(["coordinator", "--signing-key", key]))
    assert demo.rounds.server_optimizer == coordinator.rounds.server_optimizer == "fedadam"


def test_demo_takes_devices_per_hospital_like_every_role() -> None:
    parser = build_parser()
    demo = options_from_args(parser.parse_args(["demo", "--devices-per-hospital", "4"]))
    assert demo.devices == 4
    for command in ("demo", "devices", "coordinator"):
        flags = {a.option_strings[0] for a in _subparser(parser, command)._actions}
        assert "--devices-per-hospital" in flags and "--devices" not in flags, command


def test_coordinator_takes_zero_rounds_as_forever_where_the_demo_refuses_it(
    tmp_path: Path,
) -> None:
    parser = build_parser()
    key = str(write_private_key(tmp_path))
    args = parser.parse_args(["coordinator", "--rounds", "0", "--signing-key", key])
    assert coordinator_config(args).rounds.rounds == 0
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        options_from_args(parser.parse_args(["demo", "--rounds", "0"]))


def test_demo_refuses_to_mix_registries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models" / "digits_mlp").mkdir(parents=True)
    (tmp_path / "models" / "digits_mlp" / "v3.json").write_text("{}")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "already holds a model registry" in capsys.readouterr().err


ONE_DEVICE = '"devices": [{"hospital": "h0", "device": "d0", "train": [%d]}]'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"dataset": "digits", "test": [0], %s}' % (ONE_DEVICE % 0), "devices[0].train[0]"),
        ('{"dataset": "digits", "test": [0,]}', "not valid JSON: "),
        (
            '{"dataset": "digits", "test": [0], %s}' % (ONE_DEVICE % 1),
            "fits digits_mlp but not breast_cancer",
        ),
    ],
    ids=["row-twice", "malformed-json", "digits-split-with-both-default-models"],
)
def test_demo_bad_partition_exits_2_naming_the_file_and_the_problem(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "split.json"
    spec.write_text(content)
    assert main(["demo", "--partition", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flctl demo: {spec}: ") and message in err


def test_demo_init_weights_not_npz_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights")
    assert main(["demo", "--init-weights", str(notes)]) == 2
    err = capsys.readouterr().err
    assert f"{notes} is not an .npz file" in err
    assert "pickled" not in err


def test_demo_init_weights_of_no_model_lists_expected_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.npz"
    np.savez(weights, a=np.zeros(3, np.float32))
    assert main(["demo", "--init-weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "digits_mlp: fc1.weight [64, 32], fc1.bias [32]" in err
    assert "breast_cancer: fc1.weight [30, 16]" in err


def _subparser(parser: object, name: str) -> object:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def test_demo_help_names_the_parameters_init_weights_holds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelzoo import get_spec

    with pytest.raises(SystemExit):
        main(["demo", "--help"])

    help_text = " ".join(capsys.readouterr().out.split())
    assert get_spec("digits_mlp").param_manifest().describe() in help_text
