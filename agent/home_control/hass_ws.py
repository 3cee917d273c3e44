"""One websocket connection to Home Assistant: a live state cache, commands, registries.

`HassLink` keeps a connection to `/api/websocket` on its own thread (like paho's for MQTT):
it authenticates, subscribes to `state_changed`, loads every state with `get_states`, and
from then on applies each pushed change (Home Assistant sends one within milliseconds).
When the connection drops it waits (growing from reconnect_min_s to reconnect_max_s),
reconnects, subscribes again and reloads the states, so a change missed during the gap is
not lost. Until the states are loaded again `loaded` is false and readers must not trust the
cache. Listeners hear every state as `(entity_id, state_word, reloaded)`; `reloaded` marks a
state learnt from a (re)load, which says where things stand, not that they changed.

`command(type, **fields)` sends any websocket command from any thread and waits for its
result (the registries for `agentd home import`, `call_service`, whose errors carry the
reason the REST API leaves out).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from agent.home_control.devices import HomeControlError

log = logging.getLogger(__name__)

Listener = Callable[[str, str, bool], None]
# get_states on a big home runs to megabytes; the default 1 MiB limit would drop the link.
MAX_MESSAGE_BYTES = 64 * 2**20


class TokenRefused(HomeControlError):
    """Home Assistant answered, and refused the token."""


def websocket_url(url: str) -> str:
    """ws(s)://host/api/websocket for Home Assistant's http(s) address."""
    return "ws" + url[len("http"):] + "/api/websocket"


class HassLink:
    """A self-healing websocket to one Home Assistant; thread-safe."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0,
                 reconnect_min_s: float = 0.5, reconnect_max_s: float = 30.0):
        self.url, self.token, self.timeout_s = url, token, timeout_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.states: dict[str, dict] = {}
        self.loaded = False
        self.problem: str | None = None  # why it is not connected, for status and errors
        self.refused = False  # the token was refused: waiting will not help (retries go on)
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._pending: dict[int, tuple[threading.Event, list]] = {}
        self._next_id = 0
        self._sock: Any = None
        self._stopped = threading.Event()
        self._loaded_event = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hass-websocket", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        sock = self._sock
        if sock is not None:
            sock.close()
        if self._thread is not None:
            self._thread.join(5)

    def wait_loaded(self, timeout: float) -> bool:
        """Block until the states are loaded (True), or timeout or a refused token (False)."""
        deadline = time.monotonic() + timeout
        while not self.refused and time.monotonic() < deadline:
            if self._loaded_event.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                return True
        return self._loaded_event.is_set()

    def _run(self) -> None:
        wait = self.reconnect_min_s
        while not self._stopped.is_set():
            try:
                self._session()
                wait = self.reconnect_min_s  # it was up: the next gap starts short again
            except TokenRefused as exc:
                self._down(str(exc))
                self.refused = True  # after the problem is set: waiters read it next
            except HomeControlError as exc:
                self._down(str(exc))
            except Exception as exc:  # noqa: BLE001 - any failure of the link means reconnect
                self._down(f"lost Home Assistant's websocket at {self.url}: {exc}")
            if self._stopped.wait(wait):
                return
            wait = min(wait * 2, self.reconnect_max_s)

    def _down(self, problem: str) -> None:
        if problem != self.problem:
            log.warning("%s", problem)
        with self._lock:
            self.problem, self.loaded, self._sock = problem, False, None
            pending, self._pending = self._pending, {}
        self._loaded_event.clear()
        for event, slot in pending.values():
            slot.append({"success": False, "error": {"message": problem}})
            event.set()

    def _session(self) -> None:
        """One connection from handshake to its end."""
        from websockets.sync.client import connect  # only where Home Assistant is in use

        try:
            sock = connect(websocket_url(self.url), open_timeout=self.timeout_s,
                           max_size=MAX_MESSAGE_BYTES, proxy=None)
        except OSError as exc:
            raise HomeControlError(f"cannot reach Home Assistant at {self.url}: {exc}; is it running?") from None
        with sock:
            json.loads(sock.recv(self.timeout_s))  # auth_required
            sock.send(json.dumps({"type": "auth", "access_token": self.token}))
            if json.loads(sock.recv(self.timeout_s)).get("type") != "auth_ok":
                raise TokenRefused(f"Home Assistant at {self.url} refused the access token: make a new "
                                "long-lived token on its profile page")
            with self._lock:
                self._sock, self.refused = sock, False
            threading.Thread(target=self._load, name="hass-load", daemon=True).start()
            for raw in sock:
                self._dispatch(json.loads(raw))
        if not self._stopped.is_set():
            raise HomeControlError(f"Home Assistant at {self.url} closed the websocket")

    def _load(self) -> None:
        """Subscribe, then load every state (changes after the subscription are not missed)."""
        try:
            self.command("subscribe_events", event_type="state_changed")
            every = self.command("get_states")
        except HomeControlError as exc:
            log.warning("%s", exc)
            return
        with self._lock:
            before, self.states = self.states, {s["entity_id"]: s for s in every}
            self.loaded, self.problem = True, None
        self._loaded_event.set()
        log.info("Home Assistant at %s: %d states loaded", self.url, len(every))
        for entity_id, state in self.states.items():
            if (before.get(entity_id) or {}).get("state") != state.get("state"):
                self._tell(entity_id, state, reloaded=True)

    # -- messages ------------------------------------------------------------------------

    def _dispatch(self, message: dict) -> None:
        if message.get("type") == "event":
            data = (message.get("event") or {}).get("data") or {}
            entity_id, new = data.get("entity_id"), data.get("new_state")
            if not entity_id:
                return
            with self._lock:
                if new is None:
                    self.states.pop(entity_id, None)
                else:
                    self.states[entity_id] = new
            self._tell(entity_id, new, reloaded=False)
            return
        with self._lock:
            waiting = self._pending.pop(message.get("id"), None)
        if waiting is not None:
            waiting[1].append(message)
            waiting[0].set()

    def _tell(self, entity_id: str, state: dict | None, *, reloaded: bool) -> None:
        word = "unavailable" if state is None else str(state.get("state", "unavailable"))
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:  # a listener must be quick: hand the news on
            try:
                listener(entity_id, word, reloaded)
            except Exception:  # noqa: BLE001 - one broken listener must not stop the link
                log.exception("a Home Assistant state listener failed on %s", entity_id)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every state from now on; returns what stops that."""
        with self._lock:
            self._listeners.append(listener)

        def stop() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return stop

    def state(self, entity_id: str) -> dict | None:
        with self._lock:
            return self.states.get(entity_id)

    def snapshot(self) -> dict[str, dict]:
        """Every state now, as a copy the link will not change underneath."""
        with self._lock:
            return dict(self.states)

    def command(self, kind: str, timeout_s: float | None = None, **fields) -> Any:
        """Send one command and wait for its result; a HomeControlError with Home Assistant's reason."""
        event, slot = threading.Event(), []
        with self._lock:
            sock = self._sock
            if sock is None:
                raise HomeControlError(self.problem or f"not connected to Home Assistant at {self.url} yet")
            self._next_id += 1
            ident = self._next_id
            self._pending[ident] = (event, slot)
        try:
            sock.send(json.dumps({"id": ident, "type": kind, **fields}))
        except Exception as exc:  # noqa: BLE001 - a closed socket: the run loop reconnects
            with self._lock:
                self._pending.pop(ident, None)
            raise HomeControlError(f"lost Home Assistant's websocket at {self.url}: {exc}") from None
        if not event.wait(timeout_s or self.timeout_s):
            with self._lock:
                self._pending.pop(ident, None)
            raise HomeControlError(f"Home Assistant at {self.url} did not answer {kind} within "
                            f"{timeout_s or self.timeout_s:g} s")
        answer = slot[0]
        if not answer.get("success"):
            error = answer.get("error") or {}
            raise HomeControlError(f"Home Assistant refused {kind}: {error.get('message') or error}")
        return answer.get("result")
