"""A plain NumPy FedAvg: the yardstick the federated demo's accuracy is checked against.

No buses, no ONNX Runtime, no services: every round, every device starts
from the global weights, runs SGD over its rows with the NumPy reference MLP,
and the global model moves by the example-weighted mean of the deltas.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flsim.partition import Partition
from modelzoo import Dataset, shuffled_batches
from modelzoo.reference import accuracy, train_epoch


def numpy_fedavg(
    partition: Partition,
    data: Dataset,
    init: Mapping[str, np.ndarray],
    *,
    rounds: int,
    lr: float,
    batch_size: int,
    local_epochs: int,
    seed: int,
) -> list[float]:
    """Test accuracy of the global model after each round."""
    params = {k: np.asarray(v, np.float32) for k, v in init.items()}
    test = np.asarray(partition.test, np.int64)
    rng = np.random.default_rng(seed)
    history: list[float] = []
    for _ in range(rounds):
        total = {k: np.zeros_like(v, dtype=np.float64) for k, v in params.items()}
        examples = 0
        for shard in partition.devices:
            rows = np.asarray(shard.train, np.int64)
            x, y = data.X[rows], data.y[rows]
            local = params
            for _ in range(local_epochs):
                batches = shuffled_batches(len(rows), batch_size, rng)
                local, _ = train_epoch(local, x, y, batches, lr)
            for k in total:
                total[k] += len(rows) * (local[k].astype(np.float64) - params[k])
            examples += len(rows)
        params = {k: (params[k] + total[k] / examples).astype(np.float32) for k in params}
        history.append(accuracy(params, data.X[test], data.y[test]))
    return history
