"""Serialization throughput: schema codec with chunking vs memcpy vs pickle.

Run: ``python -m bench.serde [--floats N] [--repeat R]``. All paths move the
same 1M-float32 ModelUpdate (4 MiB) and are timed in the same run; GB/s is
tensor bytes / wall time per round trip (best of R batches).
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from schemas import ModelUpdate, Tensors, decode, encode
from schemas.chunking import DEFAULT_MAX_CHUNK_BYTES, ChunkedReceiver, encode_chunked


def _update(n: int) -> ModelUpdate:
    rng = np.random.default_rng(0)
    flat = rng.standard_normal(n, dtype=np.float32)
    tensors = Tensors.from_dict({"dense/kernel": flat[: n - 1000], "dense/bias": flat[n - 1000 :]})
    return ModelUpdate("m1", 7, 6, "dev-1", "hosp_a", 128, 0.5, 30.0, b"t" * 48, "upd-1", tensors)


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


def main(argv: list[str] | None = None) -> int:
    """Print encode+decode throughput of each path."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--floats", type=int, default=1 << 20)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--inner", type=int, default=20)
    ap.add_argument("--no-tuned-run", action="store_true", help="skip the tuned-malloc rerun")
    ap.add_argument("--max-chunk-bytes", type=int, default=DEFAULT_MAX_CHUNK_BYTES)
    args = ap.parse_args(argv)

    msg = _update(args.floats)
    nbytes = msg.tensors.nbytes
    src = msg.tensors.flat
    dst = np.empty_like(src)

    def chunked() -> object:
        rx = ChunkedReceiver()
        out = None
        for data in encode_chunked(msg, "upd-1", args.max_chunk_bytes):
            out = rx.add(data, 0)
        assert out is not None
        return out

    n_chunks = len(encode_chunked(msg, "upd-1", args.max_chunk_bytes))
    paths: list[tuple[str, Callable[[], object]]] = [
        ("memcpy (np.copyto, 1 copy)", lambda: np.copyto(dst, src)),
        ("codec encode+decode (1 message)", lambda: decode(encode(msg))),
        (f"codec + chunking ({n_chunks} chunks <= {args.max_chunk_bytes} B)", chunked),
        ("pickle dumps+loads (protocol 5)", lambda: pickle.loads(pickle.dumps(msg, protocol=5))),
        ("np.save bytes per tensor (protobuf-style)", _protobuf_style(msg)),
    ]
    print(f"payload: {args.floats} float32 = {nbytes / 2**20:.1f} MiB; best of {args.repeat}")
    tuned = "MALLOC_MMAP_THRESHOLD_" in os.environ
    print(f"glibc malloc: {'tuned (heap reuse, no fresh pages)' if tuned else 'defaults'}")
    for name, fn in paths:
        secs = _best(fn, args.repeat, args.inner)
        print(f"  {name:<48} {nbytes / secs / 1e9:7.2f} GB/s  {secs * 1e6:9.1f} us")
    if not tuned and not args.no_tuned_run:
        # Fresh multi-MiB buffers come from mmap and page-fault on first touch, which
        # is slow in this sandbox; a service can keep them on the heap via these knobs.
        env = dict(
            os.environ, MALLOC_MMAP_THRESHOLD_="67108864", MALLOC_TRIM_THRESHOLD_="268435456"
        )
        sys.stdout.flush()
        subprocess.run(
            [sys.executable, "-m", "bench.serde", *(argv or sys.argv[1:])], env=env, check=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
