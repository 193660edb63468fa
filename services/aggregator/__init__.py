"""Hospital aggregator: folds one hospital's device updates into one partial per round.

Modules: config + errors (typed settings), intake (records -> updates, failures
or decode errors), tally (per-round bookkeeping over flcore), ledger (which
offsets may be committed), outbox (partials and audit events), stats,
consume (catch-up and header helpers), aggregator (the handler and its loop),
app (the composition root), cli (``flctl aggregator``).
"""
