"""Device SDK: what a hospital app embeds to learn on local data.

``client.Device`` is the entry point (a whole app: ``examples/sdk_app.py``). It
composes the parts below and hands them one ``context.DeviceContext``:
``store`` (predictions and late labels, sqlite), ``ledger`` (rounds taken part
in, never uploaded twice), ``eligibility`` (may the device train now?),
``routes`` (topics it follows), ``checkin`` (when it checks in), ``rounds`` (an
admitted round), ``downloads``/``state``/``artifacts`` (model versions and
verified ORT artifacts per model), ``trainer`` (ORT Training: train, evaluate,
predict), ``errors`` (the typed failures a device reports for a round).
Modules are imported explicitly so ``device_sdk.store`` does not pull in ONNX
Runtime. The population simulator is not here: it is ``flsim``.
"""
