"""The ``bentofile.yaml`` that ``twi-asr bento build`` hands to ``bentoml build``.

The build context is the folder that holds the installed ``twi_asr`` package (``src/`` in a
checkout), so the bento carries exactly this package's code at its top level and
``twi_asr.bento:TwiAsr`` imports inside the bento as it does here. The Python requirements are
the extras the service needs, pinned to the versions installed in this environment (what
the tests ran against: images are frozen), and ``lock_packages`` is off, so building needs no
index. The model and engine become the bento's ``TWI_ASR_*`` environment. Nothing here
imports BentoML.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

SERVICE = "twi_asr.bento:TwiAsr"
EXTRAS = ("server", "ct2", "models", "bentoml")
"""The extras a bento of the service installs (transformers too when ``--engine transformers``)."""
INCLUDE = ("twi_asr/**/*.py", "twi_asr/py.typed", "twi_asr/server/static/*")


def build_context() -> Path:
    """The folder holding the ``twi_asr`` package: ``bentoml build``'s context."""
    import twi_asr

    return Path(twi_asr.__file__).resolve().parent.parent


def pinned_requirements(extras: tuple[str, ...]) -> list[str]:
    """The requirements of twi-asr's ``extras``, each pinned to its installed version when there is one."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    for spec in metadata.requires("twi-asr") or []:
        req = Requirement(spec)
        if req.marker is None or not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
        try:
            pins[name] = f"{name}=={metadata.version(req.name)}"
        except metadata.PackageNotFoundError:
            pins[name] = f"{name}{req.specifier}"
    return sorted(pins.values())


def bentofile_text(
    *, model: str | None = None, engine: str | None = None, base_image: str | None = None
) -> str:
    """The bentofile as YAML text (written as JSON, which is YAML, so no YAML library is needed).

    ``base_image``: the image ``bentoml containerize`` builds from instead of BentoML's default
    (``python:<version>-slim`` from Docker Hub), for machines without a registry. Its Python
    must be this one's minor version; uv inside the build then trusts the image's CA bundle
    (``UV_NATIVE_TLS``), as pip does, and pip may install uv into a distribution's Python.
    """
    from .. import __version__

    extras = EXTRAS + (("transformers",) if engine == "transformers" else ())
    envs = [
        {"name": f"TWI_ASR_{k.upper()}", "value": v} for k, v in (("model", model), ("engine", engine)) if v
    ]
    doc = {
        "service": SERVICE,
        "description": "twi-asr: Whisper speech recognition (OpenAI-compatible /v1/audio/transcriptions)",
        "labels": {"project": "twi-asr", "twi_asr_version": __version__},
        "include": list(INCLUDE),
        "exclude": ["**/__pycache__", "**/*.pyc"],
        "python": {"packages": pinned_requirements(extras), "lock_packages": False},
        "envs": envs,
    }
    if base_image:
        doc["docker"] = {"base_image": base_image}
        envs.append({"name": "UV_NATIVE_TLS", "value": "true"})
        # BentoML pip-installs uv into the base image's Python: a distribution's Python (Debian's
        # python3, as in scripts/base-image.sh) refuses that under PEP 668 unless told.
        envs.append({"name": "PIP_BREAK_SYSTEM_PACKAGES", "value": "1"})
    return json.dumps(doc, indent=2) + "\n"


def bento_envs(module_file: str | None = None) -> dict[str, str]:
    """The ``TWI_ASR_*`` variables the bento being served declares (its ``envs``).

    ``bentoml containerize`` turns a bento's ``envs`` into the image's environment, but a local
    ``bentoml serve NAME:VERSION`` does not set them, so the service reads them from the bento's
    manifest itself: ``<bento>/bento.yaml``, found from this module's place in the bento
    (``<bento>/src/twi_asr/bento/``; ``module_file`` defaults to this one) or from the working
    directory BentoML serves a bento in (``<bento>/src``; where twi-asr is also installed, the
    installed copy may be the one imported). Outside a bento there is no manifest, and nothing is read.
    """
    cwd = Path.cwd()
    places = [
        Path(module_file or __file__).resolve().parents[3],
        *([cwd.parent] if cwd.name == "src" else []),
    ]
    manifest = next((p / "bento.yaml" for p in places if (p / "bento.yaml").is_file()), None)
    if manifest is None:
        return {}
    import yaml

    info = yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}
    return {
        str(e["name"]): str(e["value"])
        for e in info.get("envs") or []
        if str(e.get("name", "")).startswith("TWI_ASR_") and e.get("value") is not None
    }


def write_bentofile(
    path: Path, *, model: str | None = None, engine: str | None = None, base_image: str | None = None
) -> Path:
    """Write :func:`bentofile_text` to ``path`` and return it."""
    path.write_text(bentofile_text(model=model, engine=engine, base_image=base_image), encoding="utf-8")
    return path


__all__ = [
    "SERVICE",
    "bento_envs",
    "bentofile_text",
    "build_context",
    "pinned_requirements",
    "write_bentofile",
]
