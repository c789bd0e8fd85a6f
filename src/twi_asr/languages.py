"""Language codes: what Whisper knows, and what Twi means to us.

Whisper has no language token for Twi/Akan. A Twi fine-tune is trained with
some token (or none) in the decoder prompt, recorded in its generation
config. So ``tw``/``twi``/``ak``/``akan`` resolve to *the checkpoint's own
default*, never to an error and never silently to English.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelNotFoundError, UsageError

#: The codes Whisper's tokenizer has a language token for (code -> name).
WHISPER_LANGUAGES: dict[str, str] = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}

#: Names users type for Twi/Akan; they mean "the checkpoint's default".
TWI_CODES = frozenset({"tw", "twi", "ak", "aka", "akan", "asante", "ashanti", "fante", "fanti"})

_BY_NAME = {name: code for code, name in WHISPER_LANGUAGES.items()}


def language_code(token_or_name: object) -> str | None:
    """``'<|sw|>'``, ``'sw'``, ``'SW'`` or ``'swahili'`` -> ``'sw'``; None for anything else.

    Checkpoints record their language in several spellings (HF's fine-tuning
    recipe saves names like ``"yoruba"``); engines need the code.
    """
    if not isinstance(token_or_name, str):
        return None
    value = token_or_name.strip().strip("<|>").strip().lower()
    if value in WHISPER_LANGUAGES:
        return value
    return _BY_NAME.get(value)


def is_twi(language: str | None) -> bool:
    """True when ``language`` names Twi/Akan in any of its accepted spellings."""
    return language is not None and language.strip().lower() in TWI_CODES


def resolve_language(requested: str | None, *, checkpoint_default: str | None) -> str | None:
    """The Whisper language code to force, or None to let the model decide.

    - ``None``, ``""`` or ``auto``: None (detect; an English-only model is English).
    - a Twi/Akan spelling: ``checkpoint_default`` (may be None: the model decides).
    - a Whisper code or name (``en``, ``english``): that code.
    - anything else: :class:`UsageError` listing what is accepted.
    """
    if requested is None:
        return None
    value = requested.strip().lower()
    if value in ("", "auto"):
        return None
    if value in TWI_CODES:
        return checkpoint_default
    if value in WHISPER_LANGUAGES:
        return value
    if value in _BY_NAME:
        return _BY_NAME[value]
    raise UsageError(
        f"unknown language {requested!r}: use a Whisper code such as 'en' or 'yo', "
        "'tw'/'ak' for Twi (the checkpoint's own default), or 'auto' to detect"
    )


def write_default_language(folder: Path, language: str) -> str:
    """Record ``language`` as the default of the Whisper checkpoint in ``folder``; return its code.

    What a public Ghanaian fine-tune does (trained with a proxy token such as ``<|yo|>``): its
    ``generation_config.json`` names the language, so ``--language tw`` decodes with that token in
    both engines (the ctranslate2 engine reads the same file beside model.bin). Works on a
    transformers checkpoint and on a CTranslate2 folder (the file is made if missing); an
    English-only model (no such language token in its tokenizer.json) is refused.
    """
    code = language_code(language)
    if code is None or code not in WHISPER_LANGUAGES:
        raise UsageError(f"--default-language {language!r}: use a Whisper code such as 'yo'")
    try:
        added = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
        tokens = {t.get("content") for t in added}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelNotFoundError(f"{folder} has no readable tokenizer.json: not a Whisper folder") from exc
    if f"<|{code}|>" not in tokens:
        raise UsageError(f"{folder} has no <|{code}|> token (English-only?): it cannot default to {code}")
    gen_file = folder / "generation_config.json"
    gen: dict[str, object] = {}
    if gen_file.is_file():
        try:
            loaded = json.loads(gen_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelNotFoundError(f"{gen_file} is not JSON: {exc}") from exc
        gen = loaded if isinstance(loaded, dict) else {}
    gen["language"] = code
    gen["task"] = "transcribe"
    gen.pop("forced_decoder_ids", None)  # the old way to say it; language wins in both engines
    gen_file.write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return code
