"""``flctl demo``: a whole federated training, every role in one process.

One module per job:

    run.py         run_demo: the run from options to report, and its work directory
    options.py     DemoOptions, checked before anything starts
    buses.py       the run's buses: in memory, local brokers started for it, or given ones
    federation.py  every role wired in this process, started and stopped together
    progress.py    the lines a person sees while it runs

The summary table, report.json and the plot are :mod:`flctl.report`.
"""

from flctl.demo.options import DemoOptions
from flctl.demo.run import run_demo

__all__ = ["DemoOptions", "run_demo"]
