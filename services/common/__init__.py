"""What the services share below the command line: chunked streams on the buses,
dead letters for records a consumer cannot use, and the settings more than one
service reads.

Not a service: services import it, and it imports no service. Process set-up
(settings machinery, logging, heap reuse, signals, heartbeat) lives in ``flproc``.
"""
