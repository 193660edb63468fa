"""The device population simulator and the demo's experiment set-up.

Above the device SDK: it runs many real ``device_sdk.Device`` objects on shards
of the bundled data sets. An app that embeds the SDK does not ship it
(``pip install nightshift-fl[sim]``).
"""
