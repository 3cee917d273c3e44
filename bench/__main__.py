"""`python -m bench` (make bench): run every benchmark that fits this machine."""

from bench import intents, ipc, prefix_cache, schedule, turn_overhead

for module in (prefix_cache, turn_overhead, ipc, intents, schedule):
    print(f"== {module.__name__}: {module.__doc__.strip().splitlines()[0]}")
    module.main([])
