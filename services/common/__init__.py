"""What the services share below the command line: chunked streams on the buses.

Not a service: services import it, and it imports no service. Process set-up
(logging, heap reuse, signals, heartbeat) lives with the commands in ``flctl``.
"""
