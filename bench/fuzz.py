"""Fuzz every ingress in child processes: any byte string gives a message or a typed rejection.

Run: ``python -m bench.fuzz [--per-type N] [--batch B] [--engine mutate|atheris]``.
Per ingress (each message type of ``schemas.MESSAGE_TYPES``, ``chunk`` and
``reassembly``, see bench.fuzz_inputs), N inputs seeded from valid messages
and mutated are fed to the decoder in child processes of B inputs each. A
child writes the index it is at and its counts into a small shared file
before each input, so when one dies by a signal the parent knows the input
(saved under ``--crash-dir``), counts a crash and goes on after it. Printed per
ingress: inputs tried, decoded OK, typed rejections (SchemaError, or a stream
that never completes), escapes (any other exception) and crashes (child killed
by a signal, or hung past ``--timeout``); then the rate of the same inputs
through plain ``pyarrow.ipc.open_stream(...).read_all()`` and of decoding the
valid seeds, measured in this run. ``--replay INGRESS I`` runs one input here.

``--engine atheris`` lets libFuzzer (atheris) mutate instead, coverage-guided,
from the same seeds; it needs ``pip install atheris``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_COUNTS = struct.Struct("<4q")  # index being tried, ok, rejected, escapes
_MEMORY_LIMIT = 4 * 2**30  # a runaway allocation in a child is a MemoryError (an escape)


# ------------------------------------------------------------------- child


def _child(ingress: str, start: int, stop: int, state: str, engine: str) -> None:
    """Try inputs [start, stop) of ``ingress``, keeping counts in the ``state`` file."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))
    if engine == "atheris":  # coverage feedback from the decoders: instrument them
        import atheris  # type: ignore[import-not-found]

        with atheris.instrument_imports(include=["schemas"]):
            from bench import fuzz_inputs as fi
    else:
        from bench import fuzz_inputs as fi

    make, consume = fi.ingress(ingress)
    with open(state, "r+b") as f:
        mm = mmap.mmap(f.fileno(), _COUNTS.size)
    counts = [start, 0, 0, 0]

    def one(data: Any) -> None:
        try:
            consume(data)
            counts[1] += 1
        except fi.REJECTIONS:
            counts[2] += 1
        except Exception as e:  # an escape: reported, and the run goes on
            counts[3] += 1
            print(f"ESCAPE {ingress} {counts[0]} {type(e).__name__}: {e}"[:400], flush=True)

    if engine == "atheris":
        _atheris(ingress, stop - start, one, counts, mm)
        return
    for i in range(start, stop):
        counts[0] = i
        _COUNTS.pack_into(mm, 0, *counts)
        one(make(i))
    counts[0] = stop
    _COUNTS.pack_into(mm, 0, *counts)


def _atheris(ingress: str, runs: int, one: Any, counts: list[int], mm: mmap.mmap) -> None:
    import atheris  # type: ignore[import-not-found]

    from bench import fuzz_inputs as fi

    corpus = tempfile.mkdtemp(prefix=f"fuzz-{ingress}-")
    pool = fi.chunk_seeds() if ingress in ("chunk", "reassembly") else fi.seeds(ingress)
    for k, data in enumerate(pool):
        Path(corpus, f"seed{k}").write_bytes(data)
    feed = (lambda d: one([d])) if ingress == "reassembly" else one

    def test_one_input(data: bytes) -> None:
        _COUNTS.pack_into(mm, 0, *counts)
        feed(data)
        counts[0] += 1
        _COUNTS.pack_into(mm, 0, *counts)

    atheris.Setup(
        [sys.argv[0], f"-runs={runs}", "-max_len=8192", "-print_final_stats=0", corpus],
        test_one_input,
    )
    atheris.Fuzz()


# ------------------------------------------------------------------- parent


@dataclass
class Tally:
    """What happened to the inputs of one ingress."""

    tried: int = 0
    ok: int = 0
    rejected: int = 0
    escapes: int = 0
    crashes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _run_batch(args: argparse.Namespace, ingress: str, start: int, stop: int, t: Tally) -> None:
    """Run inputs [start, stop) in children until all are tried, restarting after a crash."""
    with tempfile.NamedTemporaryFile(prefix="fuzz-state-") as f:
        f.write(bytes(_COUNTS.size))
        f.flush()
        mm = mmap.mmap(f.fileno(), _COUNTS.size)
        while start < stop:
            _COUNTS.pack_into(mm, 0, start, 0, 0, 0)
            cmd = [sys.executable, "-m", "bench.fuzz", "--child", ingress, str(start), str(stop)]
            cmd += [f.name, args.engine]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            began = time.monotonic()
            hung = False
            while proc.poll() is None:
                time.sleep(0.05)
                _progress(args, ingress, t, _COUNTS.unpack_from(mm, 0)[0] - start)
                if time.monotonic() - began > args.timeout:
                    proc.kill()
                    hung = True
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            at, ok, rejected, escapes = _COUNTS.unpack_from(mm, 0)
            t.ok, t.rejected, t.escapes = t.ok + ok, t.rejected + rejected, t.escapes + escapes
            t.notes += [ln for ln in out.splitlines() if ln.startswith("ESCAPE")][:5]
            done = at if args.engine == "mutate" else start + ok + rejected + escapes
            if proc.returncode == 0 and not hung:
                t.tried += done - start if args.engine == "atheris" else stop - start
                return
            t.crashes += 1
            t.tried += done - start + 1
            what = "hung" if hung else f"died (exit {proc.returncode})"
            t.notes.append(f"CRASH {ingress} input {done} {what}: {_save(args, ingress, done)}")
            if args.engine == "atheris":
                t.notes.append(out[-2000:])
                return
            start = done + 1


def _save(args: argparse.Namespace, ingress: str, i: int) -> str:
    from bench import fuzz_inputs as fi

    data = fi.ingress(ingress)[0](i)
    path = Path(args.crash_dir) / f"{ingress}-{i}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else b"".join(data))
    return str(path)


def _progress(args: argparse.Namespace, ingress: str, t: Tally, in_batch: int) -> None:
    if sys.stderr.isatty() and not args.quiet:
        sys.stderr.write(
            f"\r{ingress:<18} {t.tried + in_batch:>9,}/{args.per_type:,}  "
            f"escapes {t.escapes}  crashes {t.crashes}   "
        )
        sys.stderr.flush()


def _reference(sample: int) -> dict[str, float]:
    """Inputs/s of decode and of plain pyarrow reading on the same mutated inputs, and of
    decoding the valid seeds (run in a child: plain pyarrow is not held to anything)."""
    import pyarrow as pa

    from bench import fuzz_inputs as fi
    from schemas import decode
    from schemas.errors import SchemaError

    inputs = [fi.message_input(n, i) for n in fi.MESSAGE_INGRESSES for i in range(sample)]
    seeds = [s for n in fi.MESSAGE_INGRESSES for s in fi.seeds(n)] * max(1, sample // 8)

    def rate(fn: Any, data: list[bytes]) -> float:
        began = time.perf_counter()
        for d in data:
            with contextlib.suppress(SchemaError, pa.ArrowException, ValueError, OSError):
                fn(d)
        return len(data) / (time.perf_counter() - began)

    return {
        "decode": rate(decode, inputs),
        "pyarrow": rate(lambda d: pa.ipc.open_stream(d).read_all(), inputs),
        "valid": rate(decode, seeds),
    }


def main(argv: list[str] | None = None) -> int:
    """Fuzz every ingress and print the table; exit 1 on any escape or crash."""
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--per-type", type=int, default=100_000, help="inputs per ingress")
    p.add_argument("--batch", type=int, default=10_000, help="inputs per child process")
    p.add_argument("--only", nargs="*", default=None, help="ingresses to run (default: all)")
    p.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a child may take")
    p.add_argument("--crash-dir", default=os.path.join(tempfile.gettempdir(), "fl-fuzz-crashes"))
    p.add_argument("--reference-sample", type=int, default=1000, help="inputs per type timed")
    p.add_argument("--json", action="store_true", help="print the tallies as JSON too")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--replay", nargs=2, metavar=("INGRESS", "I"), help="run one input here")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--reference-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        ingress, start, stop, state, engine = args.child
        _child(ingress, int(start), int(stop), state, engine)
        return 0
    if args.reference_child:
        print(json.dumps(_reference(args.reference_child)))
        return 0
    from bench import fuzz_inputs as fi

    if args.replay:
        make, consume = fi.ingress(args.replay[0])
        print(consume(make(int(args.replay[1]))))
        return 0
    if args.engine == "atheris":
        try:
            import atheris  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            p.error("--engine atheris needs atheris (pip install atheris)")
    tallies: dict[str, Tally] = {}
    for ingress in args.only or fi.INGRESSES:
        t = tallies[ingress] = Tally()
        began = time.perf_counter()
        for start in range(0, args.per_type, args.batch):
            _run_batch(args, ingress, start, min(args.per_type, start + args.batch), t)
            if args.engine == "atheris":
                break  # libFuzzer runs all N in one child
        t.seconds = time.perf_counter() - began
    if sys.stderr.isatty() and not args.quiet:
        sys.stderr.write("\n")
    _print(args, tallies)
    bad = sum(t.escapes + t.crashes for t in tallies.values())
    return 1 if bad else 0


def _print(args: argparse.Namespace, tallies: dict[str, Tally]) -> None:
    print(f"engine {args.engine}, {args.per_type:,} inputs per ingress, {args.batch:,} per child")
    head = ("tried", 9), ("ok", 8), ("rejected", 9), ("escapes", 8), ("crashes", 8), ("inputs/s", 9)
    print(f"{'ingress':<18} " + " ".join(f"{h:>{w}}" for h, w in head))
    for name, t in tallies.items():
        rate = t.tried / t.seconds if t.seconds else 0.0
        print(
            f"{name:<18} {t.tried:>9,} {t.ok:>8,} {t.rejected:>9,} {t.escapes:>8} "
            f"{t.crashes:>8} {rate:>9,.0f}"
        )
    total = sum(t.tried for t in tallies.values())
    secs = sum(t.seconds for t in tallies.values())
    print(
        f"{'all':<18} {total:>9,} {sum(t.ok for t in tallies.values()):>8,} "
        f"{sum(t.rejected for t in tallies.values()):>9,} "
        f"{sum(t.escapes for t in tallies.values()):>8} "
        f"{sum(t.crashes for t in tallies.values()):>8} {total / secs if secs else 0:>9,.0f}"
    )
    for t in tallies.values():
        for note in t.notes:
            print(note)
    if args.reference_sample:
        cmd = [sys.executable, "-m", "bench.fuzz", "--reference-child", str(args.reference_sample)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if run.returncode == 0:
            ref = json.loads(run.stdout)
            print(
                f"reference, same run, {args.reference_sample:,} mutated inputs per type: "
                f"decode {ref['decode']:,.0f}/s vs plain pyarrow open_stream+read_all "
                f"{ref['pyarrow']:,.0f}/s ({ref['pyarrow'] / ref['decode']:.1f}x); "
                f"decode of valid seeds {ref['valid']:,.0f}/s"
            )
        else:
            print(f"reference: plain pyarrow child exited {run.returncode} (it validates nothing)")
    if args.json:
        print(json.dumps({n: {**vars(t), "notes": t.notes[:5]} for n, t in tallies.items()}))


if __name__ == "__main__":
    sys.exit(main())
