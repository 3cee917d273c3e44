"""Home control: devices from the config, reached over MQTT or Home Assistant's REST API.

The bundled skill `skills/home` turns this into tools. The backends (paho-mqtt, urllib) are
imported only when a configured device needs them.
"""

from agent.home_control.devices import (
    Command,
    Device,
    DeviceRegistry,
    DeviceState,
    HomeError,
    MqttTopics,
)
from agent.home_control.service import HomeService, Outcome, home_service, start_home, use_home

__all__ = [
    "Command",
    "Device",
    "DeviceRegistry",
    "DeviceState",
    "HomeError",
    "HomeService",
    "MqttTopics",
    "Outcome",
    "home_service",
    "start_home",
    "use_home",
]
