"""Flower 1.42's simulation on the demo's MLP and split: the in-memory reference.

    python -m bench.flower_ref --devices 300 [--rounds 3] [--hospitals 3]

The same model (digits 64-32-10 MLP, plain SGD, lr 0.1, batch 32, one local
epoch: the demo's defaults, trained with ``modelzoo.reference``, the NumPy
twin of the ORT graph), the same seeded Dirichlet split (``make_experiment``)
and every device every round with FedAvg. Prints one JSON line: the wall time
of every round (from the strategy's ``configure_fit`` to its ``aggregate_fit``),
the steady state (rounds 2.. averaged) and the accuracy on the held-out rows.
Needs the ``flower`` extra (``flwr[simulation]``: Ray); without it, or when Ray
cannot start, the line says why (``"error"``) and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
from onnx import numpy_helper

from flsim.experiment import make_experiment
from modelzoo import get_spec, reference
from modelzoo.data import shuffled_batches
from modelzoo.graphs import trainable_initializers

MODEL, LR, BATCH = "digits_mlp", 0.1, 32


def _initial() -> dict[str, np.ndarray]:
    """The zoo's seed-0 weights of the MLP, as the demo's coordinator starts from."""
    model = get_spec(MODEL).build(0)
    names = {n for n, _ in trainable_initializers(model)}
    return {
        i.name: numpy_helper.to_array(i).astype(np.float32)
        for i in model.graph.initializer
        if i.name in names
    }


def run(devices: int, rounds: int, hospitals: int, seed: int = 0) -> dict[str, Any]:
    """Run the simulation and return its timings (raises whatever Flower or Ray raise)."""
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    exp = make_experiment(
        [MODEL], hospitals=hospitals, devices_per_hospital=devices // hospitals, alpha=0.5,
        seed=seed,
    )  # fmt: skip
    data, shards = exp.data[MODEL], exp.partitions[MODEL].devices
    init = _initial()
    names = list(init)
    starts: list[float] = []
    ends: list[float] = []
    final: list[np.ndarray] = []

    class MlpClient(NumPyClient):
        def __init__(self, rows: tuple[int, ...], cid: int) -> None:
            self.x, self.y = data.X[list(rows)], data.y[list(rows)]
            self.cid = cid

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            params = dict(zip(names, parameters, strict=True))
            rng = np.random.default_rng((seed, self.cid, int(config.get("round", 0))))
            batches = list(shuffled_batches(len(self.y), BATCH, rng))
            params, _ = reference.train_epoch(params, self.x, self.y, batches, LR)
            return [params[n] for n in names], len(self.y), {}

    def client_fn(context: Context) -> Any:
        pid = int(context.node_config["partition-id"])
        return MlpClient(shards[pid].train, pid).to_client()

    class Timed(FedAvg):
        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            starts.append(time.perf_counter())
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            out = super().aggregate_fit(server_round, results, failures)
            ends.append(time.perf_counter())
            if out[0] is not None:
                final[:] = parameters_to_ndarrays(out[0])
            return out

    n = len(shards)

    def server_fn(context: Context) -> ServerAppComponents:
        strategy = Timed(
            fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
            initial_parameters=ndarrays_to_parameters([init[k] for k in names]),
            on_fit_config_fn=lambda r: {"round": r},
        )  # fmt: skip
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    began = time.perf_counter()
    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=n,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
        verbose_logging=False,
    )
    if len(ends) < rounds:
        raise RuntimeError(f"Flower finished {len(ends)} of {rounds} rounds (see its log above)")
    walls = [e - s for s, e in zip(starts, ends, strict=False)]
    test = exp.test_set(MODEL)
    acc = (
        reference.accuracy(dict(zip(names, final, strict=True)), test.X, test.y) if final else None
    )
    return {
        "devices": n,
        "rounds": walls,
        "steady_s_per_round": statistics.fmean(walls[1:] or walls),
        "first_round_s": walls[0],
        "total_s": time.perf_counter() - began,
        "accuracy": acc,
    }


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line: the timings, or the error that kept Flower from running."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--hospitals", type=int, default=3)
    args = p.parse_args(argv)
    try:
        out = run(args.devices, args.rounds, args.hospitals)
    except Exception as exc:  # reported, not raised: the suite prints why Flower could not run
        print(json.dumps({"devices": args.devices, "error": f"{type(exc).__name__}: {exc}"[:500]}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
