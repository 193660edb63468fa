"""Process plumbing every role shares: options from flags and ``FL_*`` variables,
logging set-up, signals, health beats, exit codes, the wall clock and heap tuning.

Below the roles and the device SDK, above the pure core; it imports no role,
no adapter and nothing from the command line.
"""
