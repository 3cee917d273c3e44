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
from fakes import SlowTurn
from language_homes import HOMES, agent_for, play_all
from mosquitto import broker  # noqa: F401  (a fixture)
from test_home_mqtt import Peer

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
    # Near misses: a word one letter from a short yes is no yes ("sin" and "jap" are 0.8 like it by letters).
    ("de", "Jap.", "unclear"), ("de", "Da.", "unclear"), ("de", "Jaja.", "unclear"), ("de", "Ach ja.", "unclear"),
    ("de", "Hain.", "unclear"), ("es", "Sin.", "unclear"), ("es", "Sic.", "unclear"), ("es", "Se.", "unclear"),
    ("es", "Así.", "unclear"), ("es", "Sino.", "unclear"), ("fr", "Qui.", "unclear"), ("fr", "Ouille.", "unclear"),
    ("fr", "Lui.", "unclear"), ("en", "Yet.", "unclear"), ("en", "Yas.", "yes"),  # English keeps its fuzzy "yes"
])
def test_only_a_clear_yes_in_the_homes_language_is_a_yes(code, said, meaning):
    lang = language_of(code)
    assert hear_answer(said, Wake(list(lang.wake_phrases)), language=lang) == meaning


def test_a_transcript_that_echoes_the_hints_is_ignored_and_a_hint_said_twice_is_kept_once():
    """What Whisper base wrote for espeak-ng's French with the home's words as its prompt."""
    from agent.voice.stt import Guards, Transcript, drop_repeated_hints, hint_echo, hint_prompt

    prompt = hint_prompt(["hey agent", "okay agent", "salut agent", "dis agent", "lampadaire", "plafonnier", "salon"])
    assert drop_repeated_hints("salut agent, salut agent,", prompt) == "salut agent,"  # the wake phrase alone
    assert drop_repeated_hints("Allume le plafonnier.", prompt) == "Allume le plafonnier."
    echoed = drop_repeated_hints("Salut agent, salut agent, lampadaire, plafonnier,", prompt)
    assert hint_echo(echoed, prompt) == "lampadaire plafonnier"
    assert "echoes the hint words" in Guards().check(Transcript(text=echoed, echo=hint_echo(echoed, prompt)))
    # Names joined as people join them, or apart, are no echo.
    assert hint_echo("allume le lampadaire et le plafonnier", prompt) is None
    assert hint_echo("salut agent, allume le plafonnier du salon", prompt) is None
    assert hint_echo("anything", None) is None and drop_repeated_hints("nein nein", prompt) == "nein nein"


def test_decoding_is_greedy_unless_the_temperature_fallback_is_asked_for():
    from agent.voice.service import voice_stt

    assert voice_stt(load_settings().voice).options()["temperature"] == 0.0
    fallback = voice_stt(load_settings(overrides={"voice": {"stt_temperature_fallback": True}}).voice)
    assert "temperature" not in fallback.options()  # faster-whisper's own 0.0, 0.2 ... 1.0


def test_stop_words_are_the_languages_and_englishs():
    from agent.languages import stop_words

    assert {"halt", "stopp", "stop"} <= stop_words(language_of("de"))
    assert {"basta", "para", "cancel"} <= stop_words(language_of("es"))
    assert {"arrête", "ca suffit", "stop"} <= stop_words(language_of("fr"))
    assert stop_words(language_of("en")) == stop_words(language_of("it"))  # no row: English words
    assert "halt" not in stop_words(language_of("en"))


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

# espeak-ng's voice and words per minute for each language: at its default 165 its German and
# French trip base up. Whisper base hears espeak-ng's French "agent" ([aʒɑ̃]) as "à tous" or
# "à toi" in most of its voices; its "m4" variant at 145 gives "salut agent" (some voices give
# it doubled, "salut agent, salut agent,", which the STT keeps once). Chosen over 4 voices x 4
# speeds with the home's hints at temperature 0 (the speech is repeatable: sox -R).
VOICES = {"de": ("de", 125), "es": ("es", 125), "fr": ("fr+m4", 145)}

# (what is said, utterance by utterance; the MQTT message it must send; a word the reply must contain)
SPOKEN = {
    # Whisper base hears espeak-ng's "schalte" as "Schalter", and its "hey" as "Hi".
    "de": [(("hallo agent, mach die Stehlampe an",), ("h/steh/set", b"ON"), "eingeschaltet"),
           (("hi agent, mach das Flurlicht aus",), ("h/flur/set", b"OFF"), "ausgeschaltet")],
    "es": [(("oye agente, enciende la lámpara",), ("h/steh/set", b"ON"), "activado"),
           (("oye agente, apaga la luz del pasillo",), ("h/flur/set", b"OFF"), "apagado")],
    # French: the wake phrase said alone, then the command (the one-breath sentences below are
    # not heard). Of espeak-ng's French commands base hears "allume le plafonnier" (in 5 of 6
    # voices and speeds) but no "éteins" ("et ta", "et tout").
    "fr": [(("salut agent", "allume le plafonnier"), ("h/decke/set", b"ON"), "allumé")],
    "fr-one-breath": [(("salut agent, allume le lampadaire",), ("h/steh/set", b"ON"), "allumé"),
                      (("salut agent, éteins la lumière du couloir",), ("h/flur/set", b"OFF"), "éteint")],
}
# A device the home does not have (goes to the model, whose fixed answer runs no tool), and a
# command without the wake phrase (ignored).
NEAR_MISS = {"de": (("hallo agent, mach den Fernseher an",), "schalte die Stehlampe ein"),
             "es": (("oye agente, enciende la tele",), "enciende la lámpara"),
             # Heard "Un peu plafonnier de la cuisine.": the home's lamp in a room it does not have.
             # (Base hears espeak-ng's "allume la télé" at avg_logprob -1.01, which the guards reject.)
             "fr": (("salut agent", "allume le plafonnier de la cuisine"), "allume le plafonnier"),
             "fr-one-breath": (("salut agent, allume la télé",), "allume le lampadaire")}


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
    voice, speed = VOICES[code]
    return speech(text, tmp_path / f"{name}.wav", voice=voice, speed=speed)


def utterances(texts: tuple[str, ...], code: str, tmp_path, name: str) -> list[np.ndarray]:
    """Each text spoken, then a second's pause."""
    return [part for i, text in enumerate(texts) for part in (spoken(text, code, tmp_path, f"{name}{i}"), silence(1.0))]


# Whisper base does not understand espeak-ng's French "agent" said in one breath with a command
# ("Salut à tous !", "salut agent, salut plafonnier") nor most of its French commands ("Et à la
# lumière du couloir."): measured 0 of 5 runs (decoding is greedy, so every run hears the same).
FRENCH_ONE_BREATH = pytest.param("fr-one-breath", marks=pytest.mark.xfail(
    reason="0/5: Whisper base hears espeak-ng's French 'salut agent, allume le lampadaire' as "
           "'Salut à tous !' (the French door is covered by 'fr': the wake phrase alone, then the command)",
    strict=False))


@pytest.mark.parametrize("scenario", ["de", "es", "fr", FRENCH_ONE_BREATH])
def test_spoken_commands_act_and_are_answered_in_the_language(scenario, base_stt, broker, tmp_path):  # noqa: F811
    code = scenario[:2]
    agent, service, settings = voice_home(code, broker.port, tmp_path, base_stt)
    peer = Peer(broker.port)
    play_all(peer, code)
    near_miss, no_wake = NEAR_MISS[scenario]
    audio = [silence(0.3)]
    for i, (texts, _, _) in enumerate(SPOKEN[scenario]):
        audio += utterances(texts, code, tmp_path, f"c{i}")
    # Without the wake phrase before the near-miss: a wake phrase said alone opens a window that
    # a near-miss the guards reject would leave open for it.
    audio += [spoken(no_wake, code, tmp_path, "nowake"), silence(1.0), *utterances(near_miss, code, tmp_path, "near"),
              synth(tmp_path / "noise.wav", 1.5, "whitenoise", "vol", "0.3"), silence(0.5)]
    try:
        reports, said = listen(settings, agent, base_stt, write(tmp_path / "talk.wav", *audio))
        ran = [r for r in reports if r.command is not None]
        print(*(r.line() for r in reports), sep="\n")
        assert [r.tools for r in ran] == [["set_device"]] * len(SPOKEN[scenario]) + [[]], [r.line() for r in reports]
        for (_, message, word), report in zip(SPOKEN[scenario], ran):
            assert peer.next() == message, report.line()
            assert word.lower() in report.reply.lower(), report.reply
        assert ran[-1].reply == "(the model's answer)"  # the near-miss went to the model, no device moved
        assert any(r.ignored == "no wake phrase" for r in reports), [r.line() for r in reports]
        assert peer.silent(1.0)  # nothing else reached a device: not the speech without wake phrase, not the noise
        assert any(word.lower() in " ".join(said).lower() for _, _, word in SPOKEN[scenario])  # spoken in the language
    finally:
        peer.close()
        service.stop()


# "die Haustür abschließen" (a Home Assistant sentence): base heard espeak-ng's "schließ die
# Haustür ab" as "Schlesst die Haustür ab" whatever the voice, and "abschließen" as
# "abschließend" until the hints carried the language's words for a lock (house_words).
@pytest.mark.parametrize("answer, locked", [("ja", True), ("nein lieber nicht", False)])
def test_a_lock_asks_in_german_and_only_a_german_yes_locks_it(answer, locked, base_stt, broker, tmp_path):  # noqa: F811
    agent, service, settings = voice_home("de", broker.port, tmp_path, base_stt, confirm_window_s=6)
    peer = Peer(broker.port)
    play_all(peer, "de")
    # The wake phrase said alone first: Whisper base turned the whole sentence into English
    # ("hallo agent, please be house to up.") though told the language is German.
    audio = [silence(0.3), spoken("hallo agent", "de", tmp_path, "wake"), silence(1.0),
             spoken("die Haustür abschließen", "de", tmp_path, "command"),
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
            assert said[1] in (language_of("de").lines["no"], language_of("de").lines["unclear"]), said
    finally:
        peer.close()
        service.stop()


# "halt" is German only (not an English stop word); Whisper base heard espeak-ng's "hallo agent,
# halt" and "oye agente, basta" word for word (the Spanish "para" it hears as "lámpara").
@pytest.mark.parametrize("code, said", [("de", "hallo agent, halt"), ("es", "oye agente, basta")])
def test_a_stop_word_in_the_language_stops_the_running_turn(code, said, base_stt, tmp_path):
    slow_turn = SlowTurn()
    settings = load_settings(overrides={"language": code, "voice": {"follow_up_s": 0}})
    from agent.voice.stt import hint_prompt

    # The home's names as hints, as the daemon gives them (without them base heard the German
    # command as "Mach die Stähl am Plan.", its wake phrase lost).
    names = [d["name"] for d in HOMES[code]]
    base_stt.language, base_stt.prompt = code, hint_prompt([*settings.voice.wake_phrases, *names])
    command = SPOKEN[code][0][0][0]
    wav = write(tmp_path / "stop.wav", silence(0.3), spoken(command, code, tmp_path, "command"), silence(0.6),
                spoken(said, code, tmp_path, "stop"), silence(0.3))
    pipeline = build_pipeline(settings.voice, respond=slow_turn, source=WavSource(wav), stt=base_stt,
                              speaker=SilentSpeaker(), language=code)
    reports = asyncio.run(asyncio.wait_for(pipeline.run(), 60))
    stop = [r for r in reports if r.stop]
    assert stop and "turn" in stop[0].ignored, [r.line() for r in reports]
    assert next(r for r in reports if r.command).times["done"] < 20_000  # cut short, not the 30 s reply
    assert slow_turn.ended_at is not None
