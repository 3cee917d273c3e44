"""An HTTP API for other programs: OpenAI- and Ollama-compatible, off by default.

`server.ApiServer` is the daemon's `api` service; `chat` turns a request into an agentd turn
or a pass-through generation; `openai` and `ollama` speak the two protocols.
"""
