"""The fast path's replies in the home's language.

A command that worked answers with Home Assistant's own response for the intent ("Licht
eingeschaltet"), rendered by Jinja's sandbox from the slots (HA's responses are Jinja). What
HA's responses cannot say, agentd says from its own small table (German, Spanish, French,
English otherwise): a device that did not confirm, a refusal, a device's state. The home
tools answer in English ("Flurlicht is on"); a state reply puts its state words into the
language and keeps the device names as they are.
"""

from __future__ import annotations

import functools
import re
from datetime import time as clock_time
from typing import Any

from agent.skills.phrases import fill, references

# agentd's own words, per language (the language's first subtag).
TABLE: dict[str, dict[str, str]] = {
    "de": {"done": "Erledigt.", "unsure": "Nicht bestätigt: {result}", "failed": "Das hat nicht geklappt: {detail}",
           "denied": "Nicht ausgeführt: das braucht deine Bestätigung.", "cancelled": "Abgebrochen.",
           "is": "ist", "on": "an", "off": "aus", "open": "offen", "closed": "geschlossen",
           "locked": "abgeschlossen", "unlocked": "aufgeschlossen", "unavailable": "nicht erreichbar",
           "time": "Es ist {hour:02d}:{minute:02d}."},
    "es": {"done": "Hecho.", "unsure": "Sin confirmar: {result}", "failed": "No ha funcionado: {detail}",
           "denied": "No se ha hecho: necesita tu confirmación.", "cancelled": "Cancelado.",
           "is": "está", "on": "encendido", "off": "apagado", "open": "abierto", "closed": "cerrado",
           "locked": "cerrado con llave", "unlocked": "abierto", "unavailable": "no disponible",
           "time": "Son las {hour:02d}:{minute:02d}."},
    "fr": {"done": "C'est fait.", "unsure": "Non confirmé : {result}", "failed": "Cela n'a pas marché : {detail}",
           "denied": "Pas fait : cela demande votre confirmation.", "cancelled": "Annulé.",
           "is": "est", "on": "allumé", "off": "éteint", "open": "ouvert", "closed": "fermé",
           "locked": "verrouillé", "unlocked": "déverrouillé", "unavailable": "indisponible",
           "time": "Il est {hour:02d}:{minute:02d}."},
    "en": {"done": "Done.", "unsure": "Not confirmed: {result}", "failed": "That did not work: {detail}",
           "denied": "Not done: that needs your confirmation.", "cancelled": "Stopped.",
           "is": "is", "on": "on", "off": "off", "open": "open", "closed": "closed", "locked": "locked",
           "unlocked": "unlocked", "unavailable": "unavailable", "time": "It is {hour:02d}:{minute:02d}."},
}
_STATE = re.compile(r"^(?P<device>.+?) is (?P<state>on|off|open|closed|locked|unlocked|unavailable)\b(?P<rest>.*)$")
_CLOCK = re.compile(r"\b(\d{2}):(\d{2})\b")


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
        if self.template is not None:  # a skill sentence: its reply, or the tool's answer
            unsaid = dict.fromkeys(references(self.template), "")  # an optional slot not said reads as nothing
            return _sentence(fill(self.template, {**unsaid, **self.slots, "result": outcome.result}))
        if self.intent == "HassGetCurrentTime":
            found = _CLOCK.search(outcome.result)
            if found is None:
                return outcome.result
            moment = clock_time(int(found.group(1)), int(found.group(2)))
            return self._hass({"time": moment}) or w["time"].format(hour=moment.hour, minute=moment.minute)
        if self.intent in ("HassGetState", "HassClimateGetTemperature"):
            return self.states(outcome.result)
        if not _confirmed(outcome.result):
            return w["unsure"].format(result=self.states(outcome.result))
        return self._hass({}) or w["done"]

    def states(self, result: str) -> str:
        """"Flurlicht is on; Stehlampe is off" with the state words in the language."""
        w, parts = self.words, []
        for part in result.split("; "):
            found = _STATE.match(part)
            parts.append(f"{found['device']} {w['is']} {w[found['state']]}{found['rest']}" if found else part)
        return _sentence("; ".join(parts))

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


def _confirmed(result: str) -> bool:
    """Whether every device reported the state it was asked for (the tool says so in English)."""
    return all(" is " in part and "unavailable" not in part for part in result.split("; ")) \
        and "not changed" not in result


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]
