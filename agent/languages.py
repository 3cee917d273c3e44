"""What the top-level `language` setting decides, per language, in one small table.

`language` (BCP-47: en, de, es-MX, fr-CA, ...) sets speech recognition's language, the wake
phrases, the spoken voice, the model's instruction to answer in that language and the voice
door's own sentences (its yes/no question and what it says around it). Only the primary
subtag matters here ("de-CH" speaks as "de"). A language without a row keeps English
sentences and wake phrases, is still heard by Whisper in its own language, spoken by
espeak-ng's voice of that code, and answered by the model in that language.

Each row is kept small on purpose: every yes word is a way for a misheard word to unlock a
door, and every wake phrase a way for chatter to start a command.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Language:
    """One language's words and voices."""

    code: str  # the primary subtag: Whisper's language code, espeak-ng's voice
    name: str  # in English, for the model's instruction
    wake_phrases: tuple[str, ...]
    yes: tuple[str, ...]
    no: tuple[str, ...]
    # The door's sentences: ask (a question, "{what}" = the action), say_yes_or_no, no,
    # unclear, silence, chat_yes, chat_no, failed.
    lines: dict[str, str]
    # Words for the values tools put in a question (a lock's "lock" -> "abschließen").
    values: dict[str, str] = field(default_factory=dict)
    say_voice: str | None = None  # macOS `say -v`; None = the system's default voice
    espeak_voice: str | None = None  # espeak-ng `-v`; None = its default (English)


# The wake name "agent" is a name, so the English wake phrases work in every language too.
_WAKE = ("hey agent", "okay agent")

ENGLISH = Language(
    code="en", name="English", wake_phrases=_WAKE,
    yes=("yes", "yeah", "yep", "yup", "sure", "okay", "do it", "go ahead", "confirm", "yes please", "yes do it",
         "yes go ahead"),
    no=("no", "nope", "nah", "no thanks", "no thank you", "dont", "do not", "cancel", "stop", "never mind",
        "not now", "leave it"),
    lines={"ask": "Should I {what}?", "say_yes_or_no": "Say yes or no.", "no": "Okay, I won't.",
           "unclear": "I did not hear a yes, so I won't.", "silence": "No answer, so I won't.",
           "chat_yes": "Answered in a chat window: yes.", "chat_no": "Answered in a chat window: no, so I won't.",
           "failed": "Sorry, that did not work."},
)

TABLE: dict[str, Language] = {lang.code: lang for lang in (
    ENGLISH,
    Language(
        code="de", name="German", wake_phrases=(*_WAKE, "hallo agent", "hi agent"), say_voice="Anna", espeak_voice="de",
        yes=("ja", "jawohl", "genau", "okay", "mach das", "mach es", "ja bitte", "ja mach das", "bestätigen", "los"),
        no=("nein", "nee", "nö", "nein danke", "lieber nicht", "nicht", "abbrechen", "stopp", "lass es",
            "auf keinen fall"),
        lines={"ask": "Soll ich {what}?", "say_yes_or_no": "Sag ja oder nein.", "no": "Gut, dann nicht.",
               "unclear": "Ich habe kein Ja gehört, also nicht.", "silence": "Keine Antwort, also nicht.",
               "chat_yes": "Im Chatfenster beantwortet: ja.", "chat_no": "Im Chatfenster beantwortet: nein, also nicht.",
               "failed": "Entschuldigung, das hat nicht geklappt."},
        values={"lock": "abschließen", "unlock": "aufschließen", "open": "öffnen", "close": "schließen",
                "stop": "anhalten", "on": "einschalten", "off": "ausschalten"},
    ),
    Language(
        code="es", name="Spanish", wake_phrases=(*_WAKE, "oye agente", "hola agente"), say_voice="Monica",
        espeak_voice="es",
        yes=("sí", "si", "claro", "vale", "de acuerdo", "hazlo", "adelante", "sí por favor", "si por favor",
             "confirmar"),
        no=("no", "no gracias", "cancelar", "para", "déjalo", "dejalo", "ahora no", "mejor no"),
        lines={"ask": "¿Debo {what}?", "say_yes_or_no": "Di sí o no.", "no": "Vale, no lo haré.",
               "unclear": "No he oído un sí, así que no lo haré.", "silence": "Sin respuesta, así que no lo haré.",
               "chat_yes": "Respondido en una ventana de chat: sí.",
               "chat_no": "Respondido en una ventana de chat: no, así que no lo haré.",
               "failed": "Lo siento, no ha funcionado."},
        values={"lock": "cerrar con llave", "unlock": "abrir con llave", "open": "abrir", "close": "cerrar",
                "stop": "parar", "on": "encender", "off": "apagar"},
    ),
    Language(
        code="fr", name="French", wake_phrases=(*_WAKE, "salut agent", "dis agent"), say_voice="Thomas",
        espeak_voice="fr",
        yes=("oui", "ouais", "d accord", "daccord", "vas y", "oui merci", "bien sûr", "confirmer", "oui vas y"),
        no=("non", "non merci", "annuler", "arrête", "laisse tomber", "pas maintenant", "surtout pas"),
        lines={"ask": "Dois-je {what} ?", "say_yes_or_no": "Dis oui ou non.", "no": "D'accord, je ne le fais pas.",
               "unclear": "Je n'ai pas entendu de oui, donc je ne le fais pas.",
               "silence": "Pas de réponse, donc je ne le fais pas.",
               "chat_yes": "Répondu dans une fenêtre de discussion : oui.",
               "chat_no": "Répondu dans une fenêtre de discussion : non, donc je ne le fais pas.",
               "failed": "Désolé, cela n'a pas marché."},
        values={"lock": "verrouiller", "unlock": "déverrouiller", "open": "ouvrir", "close": "fermer",
                "stop": "arrêter", "on": "allumer", "off": "éteindre"},
    ),
)}

# Names for the model's instruction where a language has no row (the row's name otherwise).
NAMES = {"it": "Italian", "pt": "Portuguese", "nl": "Dutch", "sv": "Swedish", "da": "Danish", "nb": "Norwegian",
         "no": "Norwegian", "fi": "Finnish", "pl": "Polish", "cs": "Czech", "tr": "Turkish", "ru": "Russian",
         "uk": "Ukrainian", "el": "Greek", "ja": "Japanese", "zh": "Chinese", "ko": "Korean", "ar": "Arabic",
         "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "ro": "Romanian", "ca": "Catalan"}


def primary(code: str) -> str:
    """The primary subtag, lower case: "pt-BR" -> "pt"."""
    return code.split("-", 1)[0].lower()


def language(code: str) -> Language:
    """The row for a BCP-47 code; English words (and the code's own voice) where there is none."""
    key = primary(code)
    if key in TABLE:
        return TABLE[key]
    return Language(code=key, name=NAMES.get(key, key), wake_phrases=ENGLISH.wake_phrases, yes=ENGLISH.yes,
                    no=ENGLISH.no, lines=ENGLISH.lines, espeak_voice=key)


def answer_instruction(code: str) -> str | None:
    """The line added to the system prompt so the model answers in `code`; None for English,
    whose prompt stays exactly as it was (and its prefix cache with it)."""
    key = primary(code)
    if key == "en":
        return None
    lang = language(code)
    name = lang.name if lang.name != key else f"the language whose code is {code!r}"
    return f"Always answer in {name}, the language of this home."


def english_only(stt_model: str | None) -> bool:
    """Whether a voice.stt_model names an English-only Whisper: null (the bundled tiny.en) or a
    name ending in ".en" (whisper-base.en, a faster-whisper-small.en folder)."""
    return stt_model is None or stt_model.rstrip("/").endswith(".en")


def speech_mismatch(stt_model: str | None, stt_language: str | None, code: str) -> str | None:
    """Why an English-only speech model cannot hear `stt_language`, with the fix; None if it can."""
    if stt_language in (None, "auto") or primary(stt_language) == "en":
        return None
    model = repr(stt_model) if stt_model else "null, the bundled tiny.en"
    return (f"voice.stt_language is {stt_language!r} (language: {code!r}) but voice.stt_model ({model}) "
            "understands English only: run `agentd model pull whisper-base` and set voice.stt_model: "
            "whisper-base, or set voice.stt_language: en")


def default_voice(program: str, code: str) -> str | None:
    """The voice a speech program ("say", "espeak-ng") speaks `code` in when voice.tts_voice is
    null; None = the program's own default (English stays exactly as it was)."""
    lang = language(code)
    return lang.say_voice if program == "say" else lang.espeak_voice if program == "espeak-ng" else None
