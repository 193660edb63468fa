"""The aggregator's arithmetic path beside numpy's float32 in-place add and Flower's aggregate.

Run: ``python -m bench.aggregate [--updates 100] [--floats 1000000] [--repeat 5]``.

Every path folds the same ``--updates`` float32 vectors of ``--floats``
elements, in the same run. The aggregator's path is what it does per update:
decode the encoded ``ModelUpdate`` (zero-copy), ``validate_update`` (token,
round facts, shape, finiteness, L2 norm bound) and ``StreamingWeightedSum.add``
(weight = examples, folded ``FOLD_BATCH`` at a time as the aggregator does,
by the compiled loops of :mod:`flcore.kernels` when numba is installed);
then the mean. The same path with numpy only (an install without numba) is
measured beside it. The reference is numpy's float32 in-place
add of the same arrays (``acc += x``), the floor of any fold that reads every
update once; Flower's ``aggregate`` (flwr, optional) is the other reference.
``numpy floor`` is the cheapest check-and-fold numpy can express (three
passes per cache block, float32 only): what the target is up against.
GB/s is update bytes (4 per float) / wall time, best of ``--repeat`` rounds
that run the paths in turn (CPU time beside it). The
target: the aggregator's path at >= 50% of numpy's in-place add.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from flcore.aggregation import FOLD_BATCH, StreamingWeightedSum
from flcore.kernels import compiled, use_compiled
from flcore.tokens import issue_token
from flcore.validation import RoundFacts, UpdateClaims, validate_update
from flproc.tuning import reuse_heap_buffers
from schemas import ModelUpdate, Tensors, decode, encode

TARGET = 0.5
SECRET = b"bench-secret"
NOW_MS = 1_000_000


def _payloads(updates: int, floats: int) -> list[bytes]:
    """Encoded updates of ``floats`` small gaussian floats each (one per device)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(updates):
        flat = rng.standard_normal(floats, dtype=np.float32) * np.float32(1e-3)
        device = f"dev-{i}"
        token = issue_token(
            model="m",
            round_id=7,
            base_version=6,
            device_id=device,
            hospital_id="h",
            expires_at_ms=NOW_MS + 60_000,
            secret=SECRET,
        )
        tensors = Tensors.from_dict({"w": flat[:-10], "b": flat[-10:]})
        msg = ModelUpdate("m", 7, 6, device, "h", 10 + i, 0.5, 1.0, token, f"u{i}", tensors)
        out.append(encode(msg))
    return out


def aggregator_path(payloads: list[bytes], floats: int, batch: int = FOLD_BATCH) -> np.ndarray:
    """Decode, validate and fold every payload, ``batch`` at a time; the weighted mean."""
    facts = RoundFacts("m", "h", 7, 6, True, floats, norm_bound=1e6)
    acc = StreamingWeightedSum(floats, batch)
    seen: set[str] = set()
    for payload in payloads:
        u = decode(payload, ModelUpdate)
        claims = UpdateClaims(
            u.device_id,
            u.hospital_id,
            u.model,
            u.round_id,
            u.base_version,
            u.num_examples,
            bytes(u.token),
            u.tensors.flat,
        )
        rejection = validate_update(claims, facts, seen, now_ms=NOW_MS, secret=SECRET)
        if rejection is not None:
            raise AssertionError(f"bench update rejected: {rejection}")
        acc.add(u.tensors.flat, u.num_examples)
        seen.add(u.device_id)
    return acc.mean()


def _numpy_fold(payloads: list[bytes], floats: int, batch: int) -> np.ndarray:
    """The aggregator's path with the compiled loops turned off (an install without numba)."""
    previous = use_compiled(False)
    try:
        return aggregator_path(payloads, floats, batch)
    finally:
        use_compiled(previous)


def numpy_inplace_add(arrays: list[np.ndarray]) -> np.ndarray:
    """The reference: float32 ``acc += x`` over the same arrays."""
    acc = np.zeros_like(arrays[0])
    for x in arrays:
        np.add(acc, x, out=acc)
    return acc


def numpy_floor(arrays: list[np.ndarray], weights: list[int]) -> np.ndarray:
    """The least any numpy check-and-fold costs: per cache block one dot (the norm), one
    multiply by the weight and one add, all in float32 (no decode, no token, no float64).

    Three numpy passes over each update where the reference makes one: it bounds what
    the aggregator's path can reach with numpy alone.
    """
    width = 1 << 15
    acc = np.zeros_like(arrays[0])
    scratch = np.empty(width, np.float32)
    for x, w in zip(arrays, weights, strict=True):
        weight = np.float32(w)
        for start in range(0, x.shape[0], width):
            block = x[start : start + width]
            float(np.dot(block, block))
            part = np.multiply(block, weight, out=scratch[: block.shape[0]])
            target = acc[start : start + width]
            np.add(target, part, out=target)
    return acc


def _flower() -> Callable[[list[np.ndarray], list[int]], object] | None:
    try:
        from flwr.server.strategy.aggregate import aggregate
    except ImportError:
        return None

    def run(arrays: list[np.ndarray], weights: list[int]) -> object:
        return aggregate([([x], w) for x, w in zip(arrays, weights, strict=True)])

    return run


def best_seconds(
    paths: dict[str, Callable[[], object]], repeat: int
) -> dict[str, tuple[float, float]]:
    """Best wall and best CPU time of each path over ``repeat`` rounds running every path in turn.

    Interleaved, so load from other processes on a shared machine hits every
    path alike instead of whichever happened to run during it. CPU time (this
    process, all threads) is the steadier figure on a machine shared with
    other work; wall time is the verdict.
    """
    best = dict.fromkeys(paths, (float("inf"), float("inf")))
    for _ in range(repeat):
        for name, fn in paths.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def measure(
    updates: int, floats: int, repeat: int, batch: int = FOLD_BATCH
) -> tuple[float, list[tuple[str, tuple[float, float]]]]:
    """Gigabytes per pass and each path's best (wall, CPU) seconds; the reference first,
    the aggregator's path second."""
    reuse_heap_buffers()  # as the services run
    payloads = _payloads(updates, floats)
    decoded = [decode(p, ModelUpdate) for p in payloads]
    arrays = [u.tensors.flat for u in decoded]
    weights = [u.num_examples for u in decoded]
    expected = np.average(np.stack(arrays[:4]), axis=0, weights=weights[:4])
    check = aggregator_path(payloads[:4], floats, batch)
    assert np.allclose(check, expected, atol=1e-7), "the aggregator's mean is wrong"
    paths: dict[str, Callable[[], object]] = {
        "numpy float32 acc += x (reference)": lambda: numpy_inplace_add(arrays),
        f"aggregator: decode+validate+fold x{batch}": lambda: aggregator_path(
            payloads, floats, batch
        ),
        "aggregator, numpy only (no numba)": lambda: _numpy_fold(payloads, floats, batch),
        "numpy floor: dot + w*x + add, float32": lambda: numpy_floor(arrays, weights),
    }
    flower = _flower()
    if flower is not None:
        paths["flwr aggregate"] = lambda: flower(arrays, weights)
    return updates * floats * 4 / 1e9, list(best_seconds(paths, repeat).items())


def suite_rows(quick: bool) -> list[dict[str, str]]:
    """The aggregator's path beside numpy's in-place add (and Flower's), for ``python -m bench``."""
    gigabytes, rows = measure(30 if quick else 100, 1_000_000, 2 if quick else 3)
    ref_wall = rows[0][1][0]
    ref = f"numpy float32 acc += x {gigabytes / ref_wall:.2f} GB/s"
    out = []
    for name, (wall, _) in rows[1:]:
        share = ref_wall / wall
        note = (
            f"target >= {TARGET:.0%}: {'PASS' if share >= TARGET else 'FAIL'}"
            if (name.startswith("aggregator: "))
            else ""
        )
        out.append({
            "row": f"aggregate: {name}", "figure": f"{gigabytes / wall:.2f} GB/s ({share:.0%})",
            "reference": ref, "note": note,
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit status 1 when the 50% target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--floats", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=FOLD_BATCH, help="updates folded at a time")
    args = parser.parse_args(argv)
    gigabytes, rows = measure(args.updates, args.floats, args.repeat, args.batch)
    ref_wall, ref_cpu = rows[0][1]
    print(f"{args.updates} updates x {args.floats} float32; best of {args.repeat}")
    print(f"{'path':<40} {'GB/s':>7} {'of numpy':>9} {'cpu GB/s':>9} {'of numpy':>9}")
    for name, (wall, cpu) in rows:
        print(
            f"{name:<40} {gigabytes / wall:7.2f} {ref_wall / wall:8.0%}"
            f" {gigabytes / cpu:9.2f} {ref_cpu / cpu:8.0%}"
        )
    ratio = ref_wall / rows[1][1][0]
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"target: aggregator >= {TARGET:.0%} of numpy in-place add: {ratio:.0%} {verdict}")
    if compiled() is None:
        print("numba not installed: both aggregator rows use numpy only")
    if not any(name == "flwr aggregate" for name, _ in rows):
        print("flwr not installed: Flower's aggregate not measured")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
