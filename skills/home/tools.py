"""Home control tools: switch, dim, lock and read the devices listed under `home.devices`.

A tool has one risk tier, so the tiers follow the devices: `set_device` (write) changes lights,
switches and thermostats; `set_secure_device` (confirm) is the only way to open, close, lock
or unlock, and to change a device marked `confirm: true`, so a person says yes first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

from pydantic import Field

from agent import ToolContext, ToolError, ToolResult, tool
from agent.home_control import ChangeResult, DeviceCommand, DeviceState, HomeControlError, HomeService

Percent = Annotated[int, Field(ge=0, le=100)]
NO_VISION = ("this model cannot see pictures: install agentd[vision] (pip install 'agentd[vision]') "
             "and use a Qwen3.5 model with its vision weights")


@tool(risk="write")
def set_device(
    ctx: ToolContext,
    device: str,
    state: Literal["on", "off"] | None = None,
    brightness: Percent | None = None,
    temperature: float | None = None,
) -> str:
    """Turn lights, switches or thermostats on or off, dim a light, or set a thermostat's
    temperature. Not for locks, doors, blinds or garage doors: use set_secure_device.

    Args:
        device: A device name ("kitchen light"), a room ("kitchen") or both ("kitchen lights").
        state: "on" or "off".
        brightness: Light brightness in percent, 0 to 100.
        temperature: A thermostat's target temperature, in degrees.
    """
    if state is None and brightness is None and temperature is None:
        raise ToolError("say what to change: state, brightness or temperature")
    return _report(_home(ctx).set(device, DeviceCommand(state, brightness, temperature)))


@tool(risk="confirm")
def set_secure_device(
    ctx: ToolContext,
    device: str,
    action: Literal["lock", "unlock", "open", "close", "stop", "on", "off"],
) -> str:
    """Lock or unlock a lock, open, close or stop a cover (door, blind, garage door), or switch
    a device that needs the person's confirmation. The person is asked first.

    Args:
        device: One device's name, e.g. "front door".
        action: What to do: lock, unlock, open, close, stop, on or off.
    """
    return _report(_home(ctx).set(device, DeviceCommand(action), secure=True))


# The question a voice turn asks aloud before this runs ("Lock the back door? Say yes or no."),
# in the home's language (the action in its words: "Haustür abschließen? Sag ja oder nein.").
set_secure_device.confirm_question = {"en": "{action} the {device}?", "de": "{device} {action}?",
                                      "es": "¿{action} {device}?", "fr": "{action} {device} ?"}


@tool
def get_device_state(ctx: ToolContext, device: str) -> str:
    """Read the current state of a device, a room, or a kind of device in a room (sensors, lights, locks...).

    Args:
        device: A device name ("hall temperature"), a room ("kitchen") or both ("kitchen lights").
    """
    states = _home(ctx).read(device)
    return ToolResult(_lines(states), states)


@tool
def list_devices(ctx: ToolContext, room: str | None = None) -> str:
    """List the home's devices with their kind, room and current state.

    Args:
        room: Only the devices in this room; leave it out for every device.
    """
    service = _home(ctx)
    devices = service.registry.in_room(room)
    if not devices:
        return "No devices are configured (they are listed under home.devices in agentd's config)."
    states = service.states(devices)
    return "\n".join(f"{d.describe()}: {s.summary()}" for d, s in zip(devices, states))


@tool
async def look_at_camera(ctx: ToolContext, camera: str, question: str) -> str:
    """Look at a camera's current picture and answer a question about it, e.g. whether the
    garage door is open or a parcel is at the front door.

    Args:
        camera: The camera's name ("porch camera") or its room ("garage").
        question: What to find out from the picture, as a full question.
    """
    home = _home(ctx)
    device = home.cameras.find(home.registry, camera)
    if ctx.vision is None:
        raise ToolError(NO_VISION)
    snap = await home.cameras.snapshot(device)
    kept = await asyncio.to_thread(home.cameras.keep, device, snap)  # only when the settings ask
    try:
        answer = await ctx.vision(snap.data, question)
    except (ValueError, OSError) as exc:  # a picture the engine cannot decode
        raise ToolError(f"the model could not look at the picture from {device.name}: {exc}") from None
    details = snap.describe(time.time()) + (f"; kept as {kept.name}" if kept else "")
    return f"{answer.strip()}\n({device.name}: {details})"


def _home(ctx: ToolContext) -> HomeService:
    """The daemon's home control, handed in; a HomeControlError the model can read if there is none."""
    if ctx.home_control is None:
        raise HomeControlError("home control is not running (agentd starts it when home.devices lists devices)")
    return ctx.home_control


def _report(outcome: ChangeResult) -> ToolResult:
    """A change's outcome as text for the model, with the outcome itself as data (the phrase
    path's replies in the home's language read the states, not these words)."""
    return ToolResult(_lines(outcome.states, outcome.skipped), outcome)


def _lines(states: list[DeviceState], skipped: list[str] = ()) -> str:
    """Short sentences, one per device."""
    text = "; ".join(s.text() for s in states)
    return text + (f"; not changed: {', '.join(f'{name} (needs set_secure_device)' for name in skipped)}"
                   if skipped else "")
