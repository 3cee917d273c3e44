"""Cameras: one snapshot from a camera device, checked to be a picture, kept only when asked.

A camera (`kind: camera` in home.devices) gets its picture from exactly one place: Home
Assistant's `/api/camera_proxy/<entity_id>`, the latest message on an MQTT snapshot topic
(retained ones count), a file on this machine, or a program that prints one picture (run
without a shell, with a time limit). A snapshot lives in memory for the turn that asked for
it; only when `home.cameras.keep_snapshots` (or the camera's `keep: true`) says so is it
saved under the home folder, the oldest deleted past `keep_count`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agent.home_control.devices import Device, DeviceRegistry, DeviceState, HomeControlError

log = logging.getLogger(__name__)

# Picture formats by their first bytes: what a camera or a snapshot tool sends.
_SIGNATURES = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"),
               (b"GIF89a", "gif"), (b"BM", "bmp"))
_STDERR_KEPT = 2000  # bytes of a failed command's stderr worth showing


@dataclass(frozen=True)
class CameraLimits:
    """The `home.cameras` settings; these defaults are config/default.yaml's, for a service
    a test builds by hand."""

    max_snapshot_bytes: int = 10_000_000
    timeout_s: float = 10.0
    keep_snapshots: bool = False
    keep_count: int = 200


@dataclass(frozen=True)
class Snapshot:
    """One picture from a camera, as the turn that asked for it holds it."""

    camera: str
    data: bytes
    format: str  # jpeg, png, ...
    taken: float  # time.time() when it was taken (or arrived, or the file was written)
    source: str  # where it came from, in words
    retained: bool = False  # an MQTT retained message: taken some time before `taken`

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.taken)

    def describe(self, now: float) -> str:
        """`34 KB JPEG from MQTT topic cams/porch, 12 s old`."""
        age = _age(self.age_s(now)) + (" or more (a retained message)" if self.retained else "")
        return f"{_size(len(self.data))} {self.format.upper()} from {self.source}, {age} old"


def image_format(data: bytes) -> str | None:
    """The picture format of these bytes (jpeg, png, gif, bmp, webp), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def source_of(camera: Device) -> str:
    """Where a camera's pictures come from, in words: `MQTT topic cams/porch`."""
    if camera.entity_id:
        return f"Home Assistant {camera.entity_id}"
    if camera.mqtt is not None:
        return f"MQTT topic {camera.mqtt.snapshot_topic}"
    return camera.snapshot.describe() if camera.snapshot else "no source"


def setup_problem(camera: Device) -> str | None:
    """What is visibly wrong with a local camera's set-up (a missing file or program), without
    taking a picture; None when nothing is."""
    local = camera.snapshot
    if local is None:
        return None
    if local.file and not os.access(local.file, os.R_OK):
        return f"{local.file} is missing or unreadable"
    if local.command and shutil.which(local.command[0]) is None:
        return f"the program {local.command[0]!r} is not found"
    return None


class Cameras:
    """Takes snapshots from the configured cameras through the backends that reach them."""

    def __init__(self, limits: Any = None, *, mqtt: Any = None, hass: Any = None, snapshots_dir: Path | None = None,
                 now: Callable[[], float] = time.time):
        self.limits = limits or CameraLimits()
        self.mqtt, self.hass = mqtt, hass
        self.snapshots_dir = Path(snapshots_dir) if snapshots_dir else None
        self.now = now

    # -- finding -------------------------------------------------------------------------

    @staticmethod
    def find(registry: DeviceRegistry, name: str) -> Device:
        """The camera a spoken name means; HomeControlError listing the cameras when none fits."""
        cameras = [d for d in registry if d.kind == "camera"]
        if not cameras:
            raise HomeControlError("no cameras are configured (a camera is a home.devices entry with kind: camera)")
        try:
            chosen = [d for d in registry.find(name).devices if d.kind == "camera"]
        except HomeControlError:
            chosen = []
        if len(chosen) == 1:
            return chosen[0]
        listed = ", ".join(d.describe() for d in cameras)
        if chosen:
            raise HomeControlError(f"{name!r} could mean several cameras: say which one ({listed})")
        raise HomeControlError(f"there is no camera called {name!r}; cameras: {listed}")

    # -- taking ----------------------------------------------------------------------------

    async def snapshot(self, camera: Device) -> Snapshot:
        """The camera's current picture; HomeControlError saying why it cannot give one."""
        if camera.entity_id:
            snap = await self._from_hass(camera)
        elif camera.mqtt is not None:
            snap = await asyncio.to_thread(self._from_mqtt, camera)
        elif camera.snapshot and camera.snapshot.file:
            snap = await asyncio.to_thread(self._from_file, camera, Path(camera.snapshot.file))
        elif camera.snapshot and camera.snapshot.command:
            snap = await self._from_command(camera, camera.snapshot.command)
        else:
            raise HomeControlError(f"{camera.name} has no snapshot source in the config")
        return snap

    def _checked(self, camera: Device, data: bytes, source: str, taken: float, retained: bool = False) -> Snapshot:
        limit = self.limits.max_snapshot_bytes
        if len(data) > limit:
            raise HomeControlError(f"the picture from {camera.name} ({source}) is over "
                                   f"home.cameras.max_snapshot_bytes ({limit} bytes)")
        if not data:
            raise HomeControlError(f"{camera.name} gave an empty picture ({source})")
        kind = image_format(data)
        if kind is None:
            raise HomeControlError(f"what {camera.name} gave ({source}) is not a JPEG or PNG picture "
                                   f"(it starts with {data[:12]!r})")
        return Snapshot(camera.name, data, kind, taken, source, retained)

    async def _from_hass(self, camera: Device) -> Snapshot:
        if self.hass is None:
            raise HomeControlError(f"{camera.name} is a Home Assistant camera, but Home Assistant is not set up")
        data, _ = await asyncio.to_thread(self.hass.camera_image, camera, self.limits.max_snapshot_bytes,
                                          self.limits.timeout_s)
        return self._checked(camera, data, source_of(camera), self.now())

    def _from_mqtt(self, camera: Device) -> Snapshot:
        if self.mqtt is None:
            raise HomeControlError(f"{camera.name} is an MQTT camera, but MQTT is not set up")
        topic = camera.mqtt.snapshot_topic
        picture = self.mqtt.picture(topic)
        return self._checked(camera, picture.data, source_of(camera), picture.received, picture.retained)

    def _from_file(self, camera: Device, path: Path) -> Snapshot:
        limit = self.limits.max_snapshot_bytes
        try:
            with open(path, "rb") as f:
                taken = os.fstat(f.fileno()).st_mtime
                data = f.read(limit + 1)
        except OSError as exc:
            raise HomeControlError(f"cannot read {camera.name}'s picture file {path}: {exc.strerror}") from None
        return self._checked(camera, data, f"file {path}", taken)

    async def _from_command(self, camera: Device, argv: tuple[str, ...]) -> Snapshot:
        limit, timeout = self.limits.max_snapshot_bytes, self.limits.timeout_s
        shown = " ".join(argv)
        try:
            process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                           stdout=asyncio.subprocess.PIPE,
                                                           stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise HomeControlError(f"cannot run {camera.name}'s snapshot command {argv[0]!r}: "
                                   f"{exc.strerror or exc}") from None
        try:
            data, err = await asyncio.wait_for(
                asyncio.gather(_read_at_most(process.stdout, limit + 1), _read_at_most(process.stderr, _STDERR_KEPT, drain=True)),
                timeout)
            if len(data) > limit:  # it goes on printing: stop it rather than read the rest
                raise HomeControlError(f"the picture from {camera.name} (command {shown}) is over "
                                       f"home.cameras.max_snapshot_bytes ({limit} bytes)")
            code = await asyncio.wait_for(process.wait(), timeout)
        except asyncio.TimeoutError:
            raise HomeControlError(f"{camera.name}'s snapshot command ({shown}) did not finish within "
                                   f"{timeout:g} s (home.cameras.timeout_s)") from None
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if code != 0:
            said = err.decode("utf-8", "replace").strip().splitlines()
            raise HomeControlError(f"{camera.name}'s snapshot command ({shown}) failed with exit code {code}"
                                   + (f": {said[-1][:300]}" if said else ""))
        return self._checked(camera, data, f"command {argv[0]}", self.now())

    # -- keeping -------------------------------------------------------------------------

    def keeps(self, camera: Device) -> bool:
        """Whether this camera's snapshots are saved (its own `keep`, else the home's setting)."""
        return camera.keep if camera.keep is not None else bool(self.limits.keep_snapshots)

    def keep(self, camera: Device, snap: Snapshot) -> Path | None:
        """Save the snapshot when the settings say so; the oldest go past keep_count. None: not kept."""
        if not self.keeps(camera):
            return None
        if self.snapshots_dir is None:
            log.warning("%s keeps snapshots, but this agentd has no home folder to keep them in", camera.name)
            return None
        self.snapshots_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        slug = re.sub(r"[^a-z0-9]+", "-", camera.name.lower()).strip("-") or "camera"
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.now()))
        path = self.snapshots_dir / f"{stamp}-{int(self.now() * 1000) % 1000:03d}-{slug}.{snap.format}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as f:
            f.write(snap.data)
        self._prune()
        return path

    def _prune(self) -> None:
        kept = sorted((p for p in self.snapshots_dir.iterdir() if p.is_file()), key=lambda p: p.name)
        for old in kept[: max(0, len(kept) - self.limits.keep_count)]:
            old.unlink(missing_ok=True)

    # -- state -------------------------------------------------------------------------

    def brief(self, camera: Device) -> str:
        """One line for `agentd status`, from what is already known (it never waits): where the
        pictures come from and, for MQTT and files, how old the latest one is."""
        source, now = source_of(camera), self.now()
        if camera.mqtt is not None and self.mqtt is not None:
            picture = self.mqtt.latest_picture(camera.mqtt.snapshot_topic)
            return f"{source}, " + (f"last picture {_age(now - picture.received)} ago" if picture else "no picture yet")
        if camera.snapshot and camera.snapshot.file:
            try:
                return f"{source}, written {_age(now - Path(camera.snapshot.file).stat().st_mtime)} ago"
            except OSError as exc:
                return f"{source}, {exc.strerror}"
        return source

    def state(self, camera: Device) -> DeviceState:
        """What list_devices shows for a camera, without taking a picture."""
        if camera.entity_id:
            if self.hass is None:
                return DeviceState(camera.name, False, reason="Home Assistant is not set up")
            return self.hass.read([camera])[0]
        if camera.mqtt is not None:
            if self.mqtt is None:
                return DeviceState(camera.name, False, reason="MQTT is not set up")
            try:
                picture = self.mqtt.picture(camera.mqtt.snapshot_topic)
            except HomeControlError as exc:
                return DeviceState(camera.name, False, reason=str(exc))
            return DeviceState(camera.name, True, f"last picture {_age(self.now() - picture.received)} ago")
        if camera.snapshot and camera.snapshot.file:
            try:
                written = Path(camera.snapshot.file).stat().st_mtime
            except OSError as exc:
                return DeviceState(camera.name, False, reason=f"cannot read {camera.snapshot.file}: {exc.strerror}")
            return DeviceState(camera.name, True, f"picture file written {_age(self.now() - written)} ago")
        return DeviceState(camera.name, True, "takes a picture when asked")


async def _read_at_most(stream: asyncio.StreamReader, limit: int, *, drain: bool = False) -> bytes:
    """Up to `limit` bytes; with `drain`, the rest is read and dropped (a chatty stderr must
    not fill its pipe and stall the program), else reading stops there."""
    chunks, size = [], 0
    while True:
        chunk = await stream.read(65536 if drain else min(65536, limit - size))
        if not chunk:
            break
        if size < limit:
            chunks.append(chunk[: limit - size])
        size += len(chunk)
        if size >= limit and not drain:
            break
    return b"".join(chunks)


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.0f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
