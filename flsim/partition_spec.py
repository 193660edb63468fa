"""Validation of a partition spec; every error names the offending field (see flsim.partition)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flsim.errors import PartitionSpecError
from flsim.partition import DeviceShard, Partition

_TOP_KEYS = {"dataset", "test", "devices"}
_DEVICE_KEYS = {"hospital", "device", "train"}


def _rows(value: Any, field: str, size: int) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise PartitionSpecError(
            field, f"must be a list of row indices, got {type(value).__name__}"
        )
    seen: set[int] = set()
    for i, row in enumerate(value):
        if isinstance(row, bool) or not isinstance(row, int):
            raise PartitionSpecError(f"{field}[{i}]", f"must be an integer, got {row!r}")
        if not 0 <= row < size:
            raise PartitionSpecError(f"{field}[{i}]", f"row {row} out of range [0, {size})")
        if row in seen:
            raise PartitionSpecError(f"{field}[{i}]", f"row {row} listed twice")
        seen.add(row)
    return tuple(value)


def _name(entry: Mapping[str, Any], key: str, field: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise PartitionSpecError(f"{field}.{key}", f"must be a non-empty string, got {value!r}")
    return value


def _keys(obj: Any, field: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise PartitionSpecError(field, f"must be an object, got {type(obj).__name__}")
    missing, unknown = sorted(allowed - set(obj)), sorted(set(obj) - allowed)
    if missing:
        raise PartitionSpecError(_join(field, missing[0]), "is missing")
    if unknown:
        raise PartitionSpecError(
            _join(field, unknown[0]), f"unknown field; allowed {sorted(allowed)}"
        )
    return obj


def _join(field: str, key: str) -> str:
    return key if field == "<root>" else f"{field}.{key}"


def parse_partition(spec: str | Mapping[str, Any], dataset_sizes: Mapping[str, int]) -> Partition:
    """Validate a spec (JSON text or dict) against known data set sizes; errors name the field."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise PartitionSpecError("<root>", f"not valid JSON: {exc}") from exc
    top = _keys(spec, "<root>", _TOP_KEYS)
    dataset = top["dataset"]
    if not isinstance(dataset, str) or dataset not in dataset_sizes:
        raise PartitionSpecError(
            "dataset", f"unknown dataset {dataset!r}; known {sorted(dataset_sizes)}"
        )
    size = dataset_sizes[dataset]
    test = _rows(top["test"], "test", size)
    if not test:
        raise PartitionSpecError("test", "must hold at least one row to evaluate on")
    owner: dict[int, str] = dict.fromkeys(test, "test")
    devices_raw = top["devices"]
    if not isinstance(devices_raw, list) or not devices_raw:
        raise PartitionSpecError("devices", "must be a non-empty list")
    devices: list[DeviceShard] = []
    pairs: set[tuple[str, str]] = set()
    for i, raw in enumerate(devices_raw):
        field = f"devices[{i}]"
        entry = _keys(raw, field, _DEVICE_KEYS)
        hospital, device = _name(entry, "hospital", field), _name(entry, "device", field)
        if (hospital, device) in pairs:
            raise PartitionSpecError(f"{field}.device", f"{hospital}/{device} appears twice")
        pairs.add((hospital, device))
        train = _rows(entry["train"], f"{field}.train", size)
        if not train:
            raise PartitionSpecError(f"{field}.train", "device has no rows")
        for j, row in enumerate(train):
            if row in owner:
                raise PartitionSpecError(
                    f"{field}.train[{j}]", f"row {row} is also in {owner[row]}"
                )
            owner[row] = field
        devices.append(DeviceShard(hospital, device, train))
    return Partition(dataset, test, tuple(devices))
