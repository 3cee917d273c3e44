"""Core tools every install has, one module per tool family."""

# Dotted names, registered in this order: keep it stable, the model's cached prompt prefix
# depends on it. Names rather than modules, so importing this package stays cheap.
CORE_TOOL_MODULES = ("tools.clock", "tools.memory", "tools.arithmetic", "tools.schedule")
