"""Device SDK: what a hospital app embeds to learn on local data.

Learning side (this package): ``store`` (predictions and late labels, sqlite),
``eligibility`` (may the device train now?), ``artifacts`` (installed, verified
ORT artifacts per model), ``trainer`` (ORT Training: train, evaluate, predict),
``errors`` (the typed failures a device reports for a round). Modules are
imported explicitly so ``device_sdk.store`` does not pull in ONNX Runtime.
"""
