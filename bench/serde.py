"""Serialization throughput: schema codec with chunking vs pure pyarrow, memcpy, pickle.

Run: ``python -m bench.serde [--floats N] [--repeat R]``. All paths move the
same 1M-float32 ModelUpdate (4 MiB) and are timed in the same run; GB/s is
tensor bytes / wall time per round trip (best of R batches of ``--inner``).
The codec is timed twice: as deployed (the fast paths of ``schemas._fastpath``
where ``schemas.codec`` takes them) and with pyarrow alone, the reference
codec (``schemas.codec.reference_only()``); so are small messages, in
microseconds per encode and decode. A fast path earns its keep here.

Every path is measured twice in one process: first with glibc malloc's
defaults, then after ``flproc.tuning.reuse_heap_buffers()``, the setting the
services run with (big freed buffers stay on the heap for reuse instead of
coming back as fresh, page-faulting pages). The chunked round trip is the
whole thing each time: encode the update, split it into chunks, hash it, frame
every chunk; then parse every chunk, copy it into the reassembly buffer,
verify the digest, and decode the ModelUpdate (zero-copy) from that buffer.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import xxhash

from flproc.tuning import reuse_heap_buffers
from schemas import CheckIn, ModelUpdate, Task, Tensors, decode, encode
from schemas.chunking import DEFAULT_MAX_CHUNK_BYTES, ChunkedReceiver, encode_chunked, parse_chunk
from schemas.codec import reference_only


def _update(n: int) -> ModelUpdate:
    rng = np.random.default_rng(0)
    flat = rng.standard_normal(n, dtype=np.float32)
    tensors = Tensors.from_dict({"dense/kernel": flat[: n - 1000], "dense/bias": flat[n - 1000 :]})
    return ModelUpdate("m1", 7, 6, "dev-1", "hosp_a", 128, 0.5, 30.0, b"t" * 48, "upd-1", tensors)


def _reference(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with the codec's fast paths off: pyarrow alone."""

    def run() -> object:
        with reference_only():
            return fn()

    return run


def _small_messages() -> list[tuple[str, object]]:
    header = Tensors.from_dict({"dense/bias": np.zeros(4, dtype=np.float32)})
    return [
        (
            "CheckIn",
            CheckIn(
                "dev-1",
                "hosp_a",
                ("m1",),
                "ort-1.19.2",
                "0.1.0",
                True,
                True,
                True,
                87.5,
                2048,
                1_700_000_000_000,
            ),
        ),
        (
            "Task",
            Task(
                "dev-1",
                "hosp_a",
                "m1",
                3,
                2,
                1,
                0,
                32,
                0.01,
                1.0,
                0.0,
                1_700_000_600_000,
                b"t" * 48,
                1_700_000_000_000,
            ),
        ),
        (
            "ModelUpdate header (4 floats)",
            ModelUpdate("m1", 7, 6, "dev-1", "hosp_a", 128, 0.5, 30.0, b"t" * 48, "upd-1", header),
        ),
    ]


def _small(repeat: int) -> None:
    """Print encode and decode microseconds per small message, fast path vs pyarrow."""
    chunk = encode_chunked(_update(1 << 17), "upd-1")[0]
    print(f"small messages: us per call, best of {repeat} x 2000 (fast path | pyarrow only)")
    calls: list[tuple[str, Callable[[], object]]] = []
    for name, msg in _small_messages():
        calls.append((f"{name} encode", partial(encode, msg)))
        calls.append((f"{name} decode", partial(decode, encode(msg))))
    calls.append(("Chunk (512 KiB payload) parse", partial(parse_chunk, chunk)))
    rows = [(name, fn, _reference(fn)) for name, fn in calls]
    for name, fast, ref in rows:
        f, r = (_best(fn, repeat, 2000) * 1e6 for fn in (fast, ref))
        print(f"  {name:<46} {f:7.1f} us | {r:7.1f} us  ({r / f:4.1f}x)")


def _best(fn: Callable[[], object], repeat: int, inner: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def _protobuf_style(msg: ModelUpdate) -> Callable[[], object]:
    """numpy -> bytes per tensor (np.save into BytesIO) -> bytes back, as Flower does."""
    import io

    arrays = msg.tensors.to_dict()

    def run() -> object:
        blobs = []
        for a in arrays.values():
            buf = io.BytesIO()
            np.save(buf, a, allow_pickle=False)
            blobs.append(buf.getvalue())
        wire = b"".join(len(b).to_bytes(8, "little") + b for b in blobs)  # stand-in framing
        out, pos = [], 0
        while pos < len(wire):
            size = int.from_bytes(wire[pos : pos + 8], "little")
            out.append(np.load(io.BytesIO(wire[pos + 8 : pos + 8 + size]), allow_pickle=False))
            pos += 8 + size
        return out

    return run


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _measure(
    paths: list[tuple[str, Callable[[], object]]], nbytes: int, repeat: int, inner: int
) -> dict[str, float]:
    """Print one line per path; return GB/s by name."""
    out: dict[str, float] = {}
    for name, fn in paths:
        f0 = _faults()
        secs = _best(fn, repeat, inner)
        faults = (_faults() - f0) / (repeat * inner + 1)
        out[name] = nbytes / secs / 1e9
        print(
            f"  {name:<46} {out[name]:7.2f} GB/s {secs * 1e6:9.1f} us {faults:7.0f} page faults/op"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Print encode+decode throughput of each path, glibc defaults then tuned."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--floats", type=int, default=1 << 20)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--inner", type=int, default=20)
    ap.add_argument("--no-tuned-run", action="store_true", help="skip the reuse_heap_buffers() run")
    ap.add_argument("--max-chunk-bytes", type=int, default=DEFAULT_MAX_CHUNK_BYTES)
    args = ap.parse_args(argv)

    msg = _update(args.floats)
    nbytes = msg.tensors.nbytes
    src = msg.tensors.flat
    dst = np.empty_like(src)
    raw = src.tobytes()

    def chunked() -> object:
        rx = ChunkedReceiver()
        out = None
        for data in encode_chunked(msg, "upd-1", args.max_chunk_bytes):
            out = rx.add(data, 0)
        assert out is not None and out.tensors.flat.shape == src.shape
        return out

    assert chunked() == msg
    assert _reference(chunked)() == msg
    n_chunks = len(encode_chunked(msg, "upd-1", args.max_chunk_bytes))
    chunk_name = f"codec + chunking ({n_chunks} chunks <= {args.max_chunk_bytes} B)"
    reference_name = "codec + chunking, pyarrow only (reference)"
    paths: list[tuple[str, Callable[[], object]]] = [
        ("memcpy (np.copyto, 1 copy)", lambda: np.copyto(dst, src)),
        ("xxh3_128 of the bytes (1 pass)", lambda: xxhash.xxh3_128_digest(raw)),
        ("codec encode+decode (1 message)", lambda: decode(encode(msg))),
        (chunk_name, chunked),
        ("pickle dumps+loads (protocol 5)", lambda: pickle.loads(pickle.dumps(msg, protocol=5))),
        ("np.save bytes per tensor (protobuf-style)", _protobuf_style(msg)),
        # Last, so that pyarrow's allocations do not change the heap the others start from.
        ("codec encode+decode, pyarrow only", _reference(lambda: decode(encode(msg)))),
        (reference_name, _reference(chunked)),
    ]
    print(
        f"payload: {args.floats} float32 = {nbytes / 2**20:.1f} MiB; "
        f"best of {args.repeat} x {args.inner}; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    env = [k for k in os.environ if k.startswith("MALLOC_")]
    print(f"[1] glibc malloc defaults{' (but env sets ' + ', '.join(env) + ')' if env else ''}")
    default = _measure(paths, nbytes, args.repeat, args.inner)
    if args.no_tuned_run:
        return 0
    applied = reuse_heap_buffers()
    print(
        "[2] flproc.tuning.reuse_heap_buffers() (as the services run): "
        f"{'applied' if applied else 'NOT applied (not glibc)'}"
    )
    tuned = _measure(paths, nbytes, args.repeat, args.inner)
    _small(args.repeat)
    print(
        f"chunked codec round trip: {tuned[chunk_name]:.2f} GB/s as deployed "
        f"({default[chunk_name]:.2f} GB/s with malloc defaults); "
        f"pyarrow only {tuned[reference_name]:.2f} GB/s; "
        f"memcpy {tuned[paths[0][0]]:.1f} GB/s, pickle {tuned[paths[4][0]]:.2f} GB/s; "
        f"target 5 GB/s: {'met' if tuned[chunk_name] >= 5 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
