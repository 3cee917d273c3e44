"""The fast path's replies in the home's language.

A command that worked answers with Home Assistant's own response for the intent ("Licht
eingeschaltet"), rendered by Jinja's sandbox from the slots (HA's responses are Jinja). What
HA's responses cannot say, agentd says from its own small table (German, Spanish, French,
English otherwise): a device that did not confirm, a refusal, a device's state. The home
tools tell the model in English ("Flurlicht is on"); these replies read the tools' data
instead (ToolFinished.data: the home's ChangeResult, the clock's moment), so whether a change
was confirmed and what state a device is in are decided from the states, never from words.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from agent.home_control import ChangeResult, DeviceState
from agent.skills.phrases import fill, references

# agentd's own words, per language (the language's first subtag).
TABLE: dict[str, dict[str, str]] = {
    "de": {"done": "Erledigt.", "unsure": "Nicht bestätigt: {result}", "failed": "Das hat nicht geklappt: {detail}",
           "denied": "Nicht ausgeführt: das braucht deine Bestätigung.", "cancelled": "Abgebrochen.",
           "silent": "{device} hat nicht geantwortet", "skipped": "nicht geändert, braucht Bestätigung: {devices}",
           "is": "ist", "on": "an", "off": "aus", "open": "offen", "closed": "geschlossen",
           "opening": "öffnet", "closing": "schließt", "stopped": "angehalten", "jammed": "blockiert",
           "locked": "abgeschlossen", "unlocked": "aufgeschlossen", "locking": "schließt ab",
           "unlocking": "schließt auf", "unavailable": "nicht erreichbar", "brightness": "Helligkeit",
           "temperature": "Zieltemperatur", "current_temperature": "aktuell", "position": "Position",
           "time": "Es ist {hour:02d}:{minute:02d}."},
    "es": {"done": "Hecho.", "unsure": "Sin confirmar: {result}", "failed": "No ha funcionado: {detail}",
           "denied": "No se ha hecho: necesita tu confirmación.", "cancelled": "Cancelado.",
           "silent": "{device} no ha respondido", "skipped": "sin cambiar, necesita confirmación: {devices}",
           "is": "está", "on": "encendido", "off": "apagado", "open": "abierto", "closed": "cerrado",
           "opening": "abriéndose", "closing": "cerrándose", "stopped": "parado", "jammed": "atascado",
           "locked": "cerrado con llave", "unlocked": "abierto", "locking": "cerrándose con llave",
           "unlocking": "abriéndose", "unavailable": "no disponible", "brightness": "brillo",
           "temperature": "temperatura objetivo", "current_temperature": "ahora", "position": "posición",
           "time": "Son las {hour:02d}:{minute:02d}."},
    "fr": {"done": "C'est fait.", "unsure": "Non confirmé : {result}", "failed": "Cela n'a pas marché : {detail}",
           "denied": "Pas fait : cela demande votre confirmation.", "cancelled": "Annulé.",
           "silent": "{device} n'a pas répondu", "skipped": "pas changé, demande une confirmation : {devices}",
           "is": "est", "on": "allumé", "off": "éteint", "open": "ouvert", "closed": "fermé",
           "opening": "en train de s'ouvrir", "closing": "en train de se fermer", "stopped": "arrêté",
           "jammed": "bloqué", "locked": "verrouillé", "unlocked": "déverrouillé", "locking": "en train de se verrouiller",
           "unlocking": "en train de se déverrouiller", "unavailable": "indisponible", "brightness": "luminosité",
           "temperature": "consigne", "current_temperature": "actuellement", "position": "position",
           "time": "Il est {hour:02d}:{minute:02d}."},
    "en": {"done": "Done.", "unsure": "Not confirmed: {result}", "failed": "That did not work: {detail}",
           "denied": "Not done: that needs your confirmation.", "cancelled": "Stopped.",
           "silent": "{device} has not answered", "skipped": "not changed, needs a confirmation: {devices}",
           "is": "is", "on": "on", "off": "off", "open": "open", "closed": "closed", "opening": "opening",
           "closing": "closing", "stopped": "stopped", "jammed": "jammed", "locked": "locked", "unlocked": "unlocked",
           "locking": "locking", "unlocking": "unlocking", "unavailable": "unavailable", "brightness": "brightness",
           "temperature": "target temperature", "current_temperature": "now", "position": "position",
           "time": "It is {hour:02d}:{minute:02d}."},
}
# The table's keys that are device states (agent.home_control's state words) and attributes.
STATE_WORDS = frozenset({"on", "off", "open", "closed", "opening", "closing", "stopped", "jammed", "locked",
                         "unlocked", "locking", "unlocking"})
ATTRIBUTE_WORDS = frozenset({"brightness", "temperature", "current_temperature", "position"})


def words(language: str) -> dict[str, str]:
    return TABLE.get(language.split("-")[0].lower(), TABLE["en"])


class Reply:
    """Renders the answer to one matched intent once its tool has run."""

    def __init__(self, language: str, responses: dict, intent: str | None, key: str | None, slots: dict,
                 *, template: str | None = None):
        self.words = words(language)
        self.responses, self.intent, self.key, self.slots = responses, intent, key, slots
        self.template = template  # a skill sentence's own reply ({slot}, {result}); None: HA's

    def __call__(self, outcome: Any) -> str:
        """The reply for a ToolFinished outcome."""
        w = self.words
        if outcome.outcome == "error":
            return w["failed"].format(detail=outcome.result.removeprefix("Error: "))
        if outcome.outcome in ("denied", "cancelled"):
            return w[outcome.outcome]
        if outcome.outcome != "ok":  # timeout, crashed
            return w["failed"].format(detail=outcome.outcome)
        change = outcome.data if isinstance(outcome.data, ChangeResult) else None
        if change is not None and not change.confirmed:  # a change the devices did not confirm
            return w["unsure"].format(result=self.states(change.states, change.skipped))
        if self.template is not None:  # a skill sentence: its reply, or the tool's answer
            unsaid = dict.fromkeys(references(self.template), "")  # an optional slot not said reads as nothing
            return _sentence(fill(self.template, {**unsaid, **self.slots, "result": outcome.result}))
        if self.intent == "HassGetCurrentTime":
            if not isinstance(outcome.data, datetime):  # a clock tool of some other skill: its words
                return outcome.result
            moment = outcome.data
            return self._hass({"time": moment.time()}) or w["time"].format(hour=moment.hour, minute=moment.minute)
        if self.intent in ("HassGetState", "HassClimateGetTemperature"):
            read = outcome.data if isinstance(outcome.data, list) else []  # get_device_state's states
            return self.states(read) if read and all(isinstance(s, DeviceState) for s in read) else outcome.result
        return self._hass({}) or w["done"]

    def states(self, states: list[DeviceState], skipped: list[str] = ()) -> str:
        """"Flurlicht ist an; Stehlampe hat nicht geantwortet", from the devices' states."""
        parts = [self.state(s) for s in states]
        if skipped:
            parts.append(self.words["skipped"].format(devices=", ".join(skipped)))
        return _sentence("; ".join(parts))

    def state(self, state: DeviceState) -> str:
        """One device's state in the language; a value without a word (21.5 °C) as it is."""
        w = self.words
        if not state.available:
            return f"{state.device} {w['is']} {w['unavailable']}"
        if state.state is None:  # the command went out, but the device did not report the change
            return w["silent"].format(device=state.device)
        extras = ", ".join(f"{w[k] if k in ATTRIBUTE_WORDS else k.replace('_', ' ')} {v}"
                           for k, v in state.attributes.items())
        said = w[state.state] if state.state in STATE_WORDS else state.state
        return f"{state.device} {w['is']} {said}" + (f" ({extras})" if extras else "")

    def _hass(self, extra: dict) -> str | None:
        """HA's response for the intent, or None where it needs what agentd cannot give it."""
        from jinja2 import TemplateError

        intent = self.responses.get(self.intent or "", {})
        source = intent.get(self.key or "default", intent.get("default"))
        if not source:
            return None
        domain = self.slots.get("domain")
        state = {"domain": domain, "name": self.slots.get("name")} if domain else {}
        try:
            text = _environment().from_string(source).render(slots={**self.slots, **extra}, state=state)
        except (TemplateError, TypeError, ValueError, AttributeError):
            return None
        return _sentence(text) or None


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    """Jinja's sandbox: HA's templates are data from a package, never trusted code. An
    undefined name (a state HA would have, such as state_attr) raises, so agentd's table answers."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]
