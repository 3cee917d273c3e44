"""Core tools every install has, one module per tool family."""

# Dotted names, registered in this order: keep it stable, the model's cached prompt prefix
# depends on it. Names rather than modules, so importing this package stays cheap. Built from
# __name__: a checkout imports this package as `tools`, a wheel as `agent.core_tools`.
CORE_TOOL_MODULES = tuple(f"{__name__}.{name}" for name in ("clock", "memory", "arithmetic", "schedule"))
