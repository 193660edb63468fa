"""The selector: the devices' stateless front door (admission, pace steering, upload bridge).

Modules: config (typed settings), selector (pure handlers of device messages),
bridge (latest plan per model, retained republishing of plans, model versions
and artifacts), stats (counters), app (composition root and run loop), cli
(``flctl selector``), errors (exceptions).
"""
