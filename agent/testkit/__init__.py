"""Tiny models built and trained offline, a scripted model, speech made with espeak-ng: for
agentd's tests and benchmarks (tests/ and bench/ both import it; nothing in the daemon does)."""
