"""Home control: devices from the config, reached over MQTT or Home Assistant's REST API.

The bundled skill `skills/home` turns this into tools; they reach the daemon's HomeService
as `ctx.home_control` (agent.tools.ToolContext). The backends (paho-mqtt, urllib) are
imported only when a configured device needs them.
"""

from agent.home_control.devices import (
    DeviceCommand,
    Device,
    DeviceRegistry,
    DeviceState,
    HomeControlError,
    MqttTopics,
)
from agent.home_control.service import HomeService, ChangeResult, start_home

__all__ = [
    "DeviceCommand",
    "Device",
    "DeviceRegistry",
    "DeviceState",
    "HomeControlError",
    "HomeService",
    "MqttTopics",
    "ChangeResult",
    "start_home",
]
