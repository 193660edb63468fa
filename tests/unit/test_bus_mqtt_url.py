"""The MQTT URL: parsed once, and never echoed with its password."""

from __future__ import annotations

import pytest

from flbus.errors import BusError
from flbus.mqtt_url import MqttUrl

pytestmark = pytest.mark.unit


def test_mqtt_url_with_credentials_keeps_them_out_of_the_safe_form() -> None:
    url = MqttUrl.parse("mqtt://alice:hunter2@broker.example:1884")

    assert (url.host, url.port, url.username, url.password) == (
        "broker.example",
        1884,
        "alice",
        "hunter2",
    )
    assert "hunter2" not in url.safe and "hunter2" not in repr(url)


def test_mqtt_url_malformed_error_names_the_form_without_the_password() -> None:
    with pytest.raises(BusError) as err:
        MqttUrl.parse("http://alice:hunter2@broker:1883")

    assert "mqtt[s]://" in str(err.value)
    assert "hunter2" not in str(err.value)
