"""The daemon: one event loop that owns the socket, the turn queue and the services.

Clients' requests arrive through `agent.ipc.Server`, which calls `Daemon.handle`; turns run
one at a time in `agent.daemon.turnqueue`; confirm-tier tools are put to the asker by
`agent.daemon.confirm`. SIGTERM/SIGINT stop it cleanly (exit 0); SIGHUP reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from agent.config.paths import socket_path as default_socket_path
from agent.daemon.confirm import ConfirmDecision, Confirmer, json_safe
from agent.daemon.health import Health, Problem
from agent.daemon.process import HomeLock, setup_logging, supervise
from agent.daemon.questions import Questions
from agent.daemon.turnqueue import Confirm, TurnQueue, TurnRequest, priority_of
from agent.events import Note, ReplyDone
from agent.ipc import protocol as p
from agent.ipc.server import AlreadyRunning, Connection, Server

log = logging.getLogger(__name__)


class Daemon:
    """agentd's core, built from parts so tests can give it a fake agent."""

    warm_up_note_s = 10.0  # seconds between progress notes while a turn waits for the warm-up

    def __init__(
        self,
        *,
        agent: Any,
        home: Path,
        settings: Any = None,
        socket_path: Path | None = None,
        audit: Callable[[ConfirmDecision], None] | None = None,
        history: Callable[[str | None, int], tuple[str | None, list[dict]]] | None = None,
        new_conversation: Callable[[str], str] | None = None,
        status: Callable[[], dict] | None = None,
        reload: Callable[[], Any] | None = None,
        on_close: Callable[[], Any] | None = None,
        confirm_timeout_s: float | None = None,
        cancel_grace_s: float | None = None,
        health: Health | None = None,
    ):
        self.agent = agent  # a reload hook may swap it; the next turn uses the new one
        self.home = Path(home)
        self.settings = settings
        self.socket_path = Path(socket_path) if socket_path else default_socket_path(self.home)
        timeout_s = _first(confirm_timeout_s, setting(settings, "daemon.confirm_timeout_s", 30.0))
        self.confirmer = Confirmer(timeout_s, audit)
        self.cancel_grace_s = _first(cancel_grace_s, setting(settings, "daemon.cancel_grace_s", 5.0))
        self.history_hook, self.new_conversation = history, new_conversation
        self.status_hook, self.reload_hook, self.on_close = status, reload, on_close
        self.turns = TurnQueue(self.run_turn, cancel_grace_s=self.cancel_grace_s)
        self.questions = Questions(self.broadcast)  # asked aloud by the voice door; any client may answer
        self.server = Server(self.socket_path, self)
        self.closing = False
        self.health = health or Health()
        self.health.notify = self._tell_problem
        self._service_state: dict[str, str] = {}  # running / restarting after ... / failed: why
        self.restart_delay_s = 1.0  # a failed service's first wait before restarting (doubling)
        self._services: dict[str, Callable[[], Awaitable[object]]] = {"turns": self.turns.work}
        self._tasks: dict[str, asyncio.Task] = {}
        self._local_ids = itertools.count(1)
        self._stop = asyncio.Event()
        self._started = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None  # set by serve(): where notices are sent from
        self._background: set[asyncio.Task] = set()

    async def run_turn(self, request: TurnRequest) -> AsyncIterator[Any]:
        """The step events of one queued request: the current agent's turn (its confirm-tier
        tools put to the asker), or the request's own job; after the model's warm-up."""
        await self._wait_for_warm_up(request)  # first: the turn's time limit starts after it
        if request.job is not None:
            stream = request.job(request.cancel)
        else:
            stream = self.agent.respond(
                request.text, conversation_id=request.conversation_id, who=request.who, thinking=request.thinking,
                explain=request.explain, confirm=lambda tool, args: self.confirmer.ask(request, tool, args),
                cancel=request.cancel, **({"images": list(request.images)} if request.images else {}))
        async with contextlib.aclosing(stream):
            async for event in stream:
                yield event

    async def _wait_for_warm_up(self, request: TurnRequest) -> None:
        """While the model warms up (minutes on a slow CPU's first start), tell the asker how far
        it is, every few seconds, instead of letting the turn's time limit run out silently."""
        warmup = getattr(getattr(self.agent, "llm", None), "warmup", None)
        if warmup is None or warmup.ready:
            return
        intents = getattr(self.agent, "intents", None)
        if intents is not None and intents.match(request.text) is not None:
            return  # the phrase path answers without the model
        async for line in warmup.wait(every_s=self.warm_up_note_s, cancel=request.cancel):
            request.emit(Note(text=line[0].upper() + line[1:] + "…", level="info"))
        if request.cancel.is_set():
            raise asyncio.CancelledError  # the queue answers it as a cancelled turn

    def add_service(self, name: str, run: Callable[[], Awaitable[object]]) -> None:
        """Run `run()` as a named, supervised task while the daemon serves."""
        self._services[name] = run

    # -- the socket's requests ------------------------------------------------------------

    async def handle(self, conn: Connection, request: Any) -> None:
        """Carry out one request from a client (the ipc.Server calls this)."""
        if isinstance(request, p.Send):
            if self.closing:
                raise p.RequestError("agentd is shutting down", request.id, "send")
            pictures = await self._pictures(request)
            conversation_id = request.conversation_id
            if conversation_id is None and self.new_conversation is not None:
                conversation_id = await asyncio.to_thread(self.new_conversation, "chat")
            self.turns.put(TurnRequest(
                priority=priority_of("chat"), seq=0, id=request.id, text=request.text, who="chat",
                conversation_id=conversation_id, thinking=request.thinking, explain=request.explain, conn=conn,
                images=pictures,
            ))
        elif isinstance(request, p.Cancel):
            if not self.turns.cancel((conn.number, request.id)):
                raise p.RequestError(f"no request {request.id!r} to cancel (it is done, or was never sent here)",
                                     request.id, "cancel")
        elif isinstance(request, p.Confirm):
            own = self.turns.requests.get((conn.number, request.id))
            if own is None and request.id in self.questions:
                self.questions.answer(request.id, request.approve)
            else:
                self.confirmer.answer(own, request)
        elif isinstance(request, p.Status):
            conn.send(p.StatusReport(v=p.VERSION, id=request.id, status=self.status()))
        elif isinstance(request, p.History):
            conn.send(await self._history(request))
        elif isinstance(request, p.Reload):
            try:
                await self.reload()
            except Exception as exc:
                raise p.RequestError(f"reload failed: {exc}", request.id, "reload") from exc
            conn.send(p.StatusReport(v=p.VERSION, id=request.id, status=self.status()))

    async def _pictures(self, request: p.Send) -> tuple:
        """The send's base64 pictures checked and shrunk, off the event loop."""
        from agent.images import ImageError

        try:
            return await self.decode_pictures(request.images)
        except ImageError as exc:
            raise p.RequestError(str(exc), request.id, "send") from None

    async def decode_pictures(self, images: list[str], name: str = "picture {n}") -> tuple:
        """Base64 pictures checked and shrunk to vision.max_pixels (agent.images), in a thread;
        agent.images.ImageError names the bad one."""
        if not images:
            return ()
        from agent.images import pictures_from_base64

        return await asyncio.to_thread(
            pictures_from_base64, images, max_pixels=setting(self.settings, "vision.max_pixels", 307200),
            max_bytes=setting(self.settings, "vision.max_image_bytes", 20_000_000), name=name)

    def connection_lost(self, conn: Connection) -> None:
        """A client left: its queued turns are dropped, its running turn stopped."""
        for key, request in list(self.turns.requests.items()):
            if request.conn is conn:
                self.turns.cancel(key, "client gone")

    async def _history(self, request: p.History) -> p.HistoryReport:
        if self.history_hook is None:
            raise p.RequestError("history is not available (no store)", request.id, "history")
        try:
            cid, messages = await asyncio.to_thread(self.history_hook, request.conversation_id, request.limit)
        except KeyError:
            raise p.RequestError(f"no conversation {request.conversation_id!r}", request.id, "history") from None
        return p.HistoryReport(v=p.VERSION, id=request.id, conversation_id=cid, messages=json_safe(messages))

    # -- in-process doors (voice, schedule) -------------------------------------------------

    async def submit(
        self, text: str, *, who: str, conversation_id: str | None = None, thinking: bool | None = None,
        confirm: Confirm | None = None, job: Callable[[asyncio.Event], Any] | None = None, images: tuple = (),
    ) -> AsyncIterator[Any]:
        """Queue a turn from a door inside the daemon; yield its step events up to ReplyDone.
        With `job`, the queue runs `job(cancel)` (step events) in the turn's place; `images`:
        Pictures for this turn (decode_pictures)."""
        outbox: asyncio.Queue = asyncio.Queue()
        request = TurnRequest(
            priority=priority_of(who), seq=0, id=f"{who}-{next(self._local_ids)}", text=text, who=who,
            conversation_id=conversation_id, thinking=thinking, outbox=outbox, confirm=confirm, job=job,
            images=tuple(images),
        )
        self.turns.put(request)
        try:
            while True:
                event = await outbox.get()
                yield event
                if isinstance(event, ReplyDone):
                    return
        finally:
            if request.state != "done":  # the door stopped listening
                self.turns.cancel(request.key, "caller gone")

    def announce(self, announcement: Any) -> bool:
        """Tell every connected client (a reminder fired, a run was missed); True if anyone heard."""
        return self.broadcast(p.Notice(v=p.VERSION, kind=announcement.kind, text=announcement.text,
                                       job_id=announcement.job_id))

    def broadcast(self, frame: Any) -> bool:
        """Send a frame to every connected client; True if anyone got it."""
        return any([conn.send(frame) for conn in list(self.server.connections)])  # a list: every one, not the first

    def _tell_problem(self, problem: Problem) -> None:
        """A problem reported while the daemon serves: every open chat window hears it once.
        Thread-safe: the store reports from the worker threads that write it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not serving: a chat window that connects later reads it from the status
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._send_notice(problem)
        else:
            loop.call_soon_threadsafe(self._send_notice, problem)

    def _send_notice(self, problem: Problem) -> None:
        frame = p.Notice(v=p.VERSION, kind=problem.kind, text=problem.text)
        for conn in list(self.server.connections):
            conn.send(frame)

    def _service_status(self, name: str, task: asyncio.Task) -> str:
        state = self._service_state.get(name, "running")
        return "stopped" if task.done() and not state.startswith("failed") else state

    def _gave_up(self, name: str, reason: str) -> None:
        self._service_state[name] = f"failed: {reason}"
        self.health.report(f"service:{name}", f"the {name} service stopped after failing repeatedly ({reason}); "
                           "the rest of agentd carries on (`agentd doctor`, then restart agentd)")

    # -- status and reload ------------------------------------------------------------------

    def status(self) -> dict:
        """What `agentd status` and the chat's status line show."""
        current = self.turns.current
        report = {
            "pid": os.getpid(),
            "home": str(self.home),
            "socket": str(self.socket_path),
            "uptime_s": round(time.monotonic() - self._started, 1),
            "busy": {"id": current.id, "who": current.who} if current else None,
            "queued": self.turns.waiting(),
            "clients": len(self.server.connections),
            "last_turn": self.turns.last_stats,
            "services": {name: self._service_status(name, task) for name, task in self._tasks.items()},
            **self.health.status(),
        }
        if self.status_hook is not None:
            try:
                report.update(self.status_hook())
            except Exception as exc:
                log.exception("the status hook failed")
                report["status_error"] = str(exc)
        return json_safe(report)

    async def reload(self) -> None:
        """Run the reload hook (SIGHUP or a `reload` request)."""
        if self.reload_hook is None:
            log.info("reload asked for; nothing to reload")
            return
        log.info("reloading")
        result = self.reload_hook()
        if inspect.isawaitable(result):
            await result
        log.info("reloaded")

    # -- life cycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to shut down (safe from a signal handler)."""
        self._stop.set()

    async def serve(self) -> None:
        """Lock the home, listen, run the services until stopped, then shut down (once per Daemon)."""
        self._loop = asyncio.get_running_loop()
        lock = HomeLock(self.home)
        lock.acquire()
        try:
            await self.server.start()
            self._install_signals()
            for name, run in self._services.items():
                self._tasks[name] = asyncio.create_task(
                    supervise(name, run, first_delay=self.restart_delay_s,
                              on_give_up=functools.partial(self._gave_up, name),
                              on_state=functools.partial(self._service_state.__setitem__, name)), name=name)
            log.info("agentd ready (pid %d) on %s", os.getpid(), self.socket_path)
            for problem in self.health.problems():  # found while starting, before the log file was open
                log.error("%s", problem)
            await self._stop.wait()
            log.info("shutting down")
        finally:
            await self._shutdown()
            lock.release()

    def run_forever(self, *, setup_logs: bool = True) -> int:
        """The blocking entry point for `agentd run`: serve until a signal; the exit code."""
        if setup_logs:
            setup_logging(
                self.home, level=setting(self.settings, "logging.level", "info"),
                max_bytes=setting(self.settings, "logging.file_max_bytes", 5_000_000),
                backups=setting(self.settings, "logging.file_backups", 3),
            )
        try:
            asyncio.run(self.serve())
        except AlreadyRunning as exc:
            log.error("%s", exc)
            return 1
        return 0

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)

    def _reload_in_background(self) -> None:
        task = asyncio.create_task(self._reload_logged(), name="reload")
        self._background.add(task)  # keep a reference, or the task may be collected mid-way
        task.add_done_callback(self._background.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception:
            log.exception("reload failed; keeping the old configuration")

    async def _shutdown(self) -> None:
        self.closing = True
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        running = self.turns.current
        for key in list(self.turns.requests):
            self.turns.cancel(key, "shutting down")
        if running is not None and running.task is not None:
            await asyncio.wait([running.task], timeout=self.cancel_grace_s)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if running is not None and running.task is not None:  # let it send its last ReplyDone
            await asyncio.wait([running.task], timeout=1)
        await self.server.close()
        if self.on_close is not None:
            try:
                result = self.on_close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("closing failed")
        log.info("agentd stopped")


def setting(settings: Any, dotted: str, default: Any) -> Any:
    """A setting by dotted path, or the default where the settings have no such key."""
    node = settings
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if node is None:
            return default
    return node


def _first(value: Any, default: Any) -> Any:
    return default if value is None else value


def store_hooks(store: Any) -> dict:
    """The history and new_conversation hooks, wired to an `agent.store.Store`."""

    def history(conversation_id: str | None, limit: int) -> tuple[str | None, list[dict]]:
        cid = conversation_id or store.latest_conversation()
        return cid, (store.messages(cid, limit=limit) if cid else [])

    # No audit hook: the executor writes one row per tool call, the confirmation's reason in it.
    return {"history": history,
            "new_conversation": lambda who: store.new_conversation(source=who.split(":")[0])}
