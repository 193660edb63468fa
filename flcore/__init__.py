"""Pure core of the platform (layer 2): no network, clock, logger or globals.

Modules: aggregation (streaming FedAvg), server_opt (FedAvg/FedAdagrad/FedAdam/
FedYogi), validation + rejection (typed update checks), tokens (signed admission),
admission (stateless selection, pace steering), rounds + round_types (coordinator
round state machine), master + close (a closed round's partials become the next
version record), hospital_round (when an aggregator publishes), privacy
(clipping, Gaussian noise), partition + partition_spec (data splits), manifest
(flat vector <-> named arrays), signing + control (Ed25519 signatures of plans,
versions and bundles; what a device adopts), errors (exception hierarchy).
"""
