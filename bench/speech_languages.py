"""Speech to text beyond English: time per call and word accuracy, side by side in one run.

The same English clip through the bundled tiny.en and the multilingual Whisper base, then
base on German, Spanish and French clips. Speech is espeak-ng's (as in the tests, repeatable),
each language in the voice and speed its tests use; accuracy is 1 - word error rate against
the text that was spoken (both normalized: case, punctuation, number words as digits),
computed, not judged. Each clip is decoded three ways: greedy at temperature 0 without hints
(the model's own ear), greedy with the home's words as hints (as agentd runs it), and with
Whisper's temperature fallback too (voice.stt_temperature_fallback: true).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import median, show

# (espeak-ng voice, words per minute, sentences) per language; the voices and speeds of
# tests/test_voice_languages.py, the English ones of bench/voice.py.
CLIPS = {
    "en": ("en-us", 165, ["hey agent, convert two hundred celsius to fahrenheit", "hey agent, turn on the kitchen light",
                          "hey agent, lock the back door"]),
    "de": ("de", 125, ["hallo agent, mach die Stehlampe an", "die Haustür abschließen", "schalte das Licht im Flur aus"]),
    "es": ("es", 125, ["oye agente, enciende la lámpara", "apaga la luz del pasillo", "cierra la puerta principal"]),
    "fr": ("fr+m4", 145, ["salut agent, allume le plafonnier", "éteins la lumière du couloir", "verrouille la porte d'entrée"]),
}
# The home's words, as house_words gives them for a home with these devices (names, rooms, a
# lock's verbs in the language), after the language's wake phrases.
HOME = {"en": ["kitchen light", "back door", "kitchen"],
        "de": ["Stehlampe", "Flurlicht", "Haustür", "Wohnzimmer", "Flur", "abschließen", "aufschließen"],
        "es": ["lámpara", "luz del pasillo", "puerta principal", "salón", "pasillo", "cerrar con llave", "abrir con llave"],
        "fr": ["plafonnier", "lumière du couloir", "porte d'entrée", "salon", "couloir", "verrouiller", "déverrouiller"]}
MODES = {"plain": (False, False), "hints": (True, False), "fallback": (True, True)}  # (hints, temperature fallback)


def words(text: str) -> list[str]:
    """What is compared: lower case, no punctuation, number words as digits."""
    from agent.skills.phrases import normalize
    from agent.voice.wake import spoken_numbers

    return normalize(spoken_numbers(text)).split()


def word_errors(reference: list[str], heard: list[str]) -> int:
    """Word-level edit distance (substitutions, insertions, deletions)."""
    row = list(range(len(heard) + 1))
    for i, ref in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, word in enumerate(heard, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref != word))
    return row[-1]


def run(stt, clips: list[tuple[str, object]], repeats: int) -> dict:
    """Median seconds per call and word accuracy over the clips, and what was heard."""
    times, errors, total, heard = [], 0, 0, []
    for text, audio in clips:
        for _ in range(repeats):
            start = time.perf_counter()
            transcript = stt.transcribe(audio)
            times.append(time.perf_counter() - start)
        errors += word_errors(words(text), words(transcript.text))
        total += len(words(text))
        heard.append(transcript.text)
    # 1 - WER, floored at 0: a transcript longer than the text can make more errors than words.
    return {"per_call_s": round(median(times), 3), "accuracy": round(max(0.0, 1 - errors / total), 2),
            "word_errors": f"{errors}/{total}", "heard": heard}


def measure(repeats: int = 2) -> dict:
    from agent.testkit import speech
    from agent.voice.stt import WhisperSTT

    folder = Path(tempfile.mkdtemp())
    clips = {code: [(text, speech.speech(text, folder / f"{code}{i}.wav", voice=voice, speed=speed))
                    for i, text in enumerate(sentences)]
             for code, (voice, speed, sentences) in CLIPS.items()}
    from agent.languages import language
    from agent.voice.stt import hint_prompt

    base = _base_model()
    result: dict = {}
    for name, model, codes in (("tiny.en", None, ("en",)), ("base", base, tuple(CLIPS))):
        for mode, (hints, fallback) in MODES.items():
            stt = WhisperSTT(model, language="en", temperature_fallback=fallback)
            for code in codes:
                stt.language = code
                stt.prompt = hint_prompt([*language(code).wake_phrases, *HOME[code]]) if hints else None
                result[f"{code} {name} {mode}"] = run(stt, clips[code], repeats)
            stt.close()
    return result


def _base_model() -> str:
    """The tests' multilingual base (assembled from its PyPI halves), or stop saying how to get it."""
    from agent.testkit.speech import whisper_base_model

    try:
        return whisper_base_model()
    except BaseException as exc:  # pytest's Skipped, outside pytest
        if type(exc).__name__ != "Skipped":
            raise
        raise SystemExit(f"bench.speech_languages needs the multilingual Whisper base: {exc}") from None


def _need(*programs: str) -> None:
    import shutil

    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"bench.speech_languages needs {', '.join(missing)} (apt-get install espeak-ng sox)")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per clip")
    args = parser.parse_args(argv)
    _need("espeak-ng", "sox")
    return show(measure(args.repeats))


if __name__ == "__main__":
    main()
