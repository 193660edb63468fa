"""Infrastructure every service shares: settings, logging, chunked streams, clocks.

Not a service: services import it, and it imports no service.
"""
