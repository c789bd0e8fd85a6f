"""Secrets for our containers and services as files, never as plain environment variables.

A variable given to a container shows in ``docker inspect`` (and in a service
spec) to anyone who can reach the engine. So the API key (``--api-key``, or
``TWI_ASR_API_KEY`` in ``--env``) and a Hugging Face token (``HF_TOKEN`` in
``--env``) become files under ``/run/secrets`` and the container gets only
their paths: ``TWI_ASR_API_KEY_FILE`` (read by the server, see
:mod:`twi_asr.secret_files`) and ``HF_TOKEN_PATH`` (read by huggingface_hub).

- A container: the file is written on this host, in a private folder (mode
  0700, under ``$XDG_RUNTIME_DIR`` or the user's cache folder; one subfolder
  per container name) and bind-mounted read-only. The file itself is 0644 so
  the container's uid 10001 can read it through the mount, while the 0700
  folder keeps other users of the host out. It is removed with the
  container. (The engine must see this host's files, as for ``--volume``.)
- A swarm service: a Docker secret (labelled ours, with the service's name),
  mounted by the engine at the same path, owned by 10001 with mode 0400. A
  changed value makes a new secret and the old one is removed once the
  service no longer uses it; removing the service removes its secrets.
  Whether a value changed is told by a salted PBKDF2 digest in the secret's
  labels, since a secret's data cannot be read back.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets as _random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import _LABELS, CONTAINER_PORT, MANAGED_LABEL, SERVICE_LABEL
from .errors import _mapped

if TYPE_CHECKING:
    from docker import DockerClient

SECRETS_DIR = "/run/secrets"
API_KEY_FILE = "twi_asr_api_key"
HF_TOKEN_FILE = "hf_token"
SECRET_VARIABLES = {
    "TWI_ASR_API_KEY": (API_KEY_FILE, "TWI_ASR_API_KEY_FILE"),
    "HF_TOKEN": (HF_TOKEN_FILE, "HF_TOKEN_PATH"),
    "HUGGING_FACE_HUB_TOKEN": (HF_TOKEN_FILE, "HF_TOKEN_PATH"),
}
"""A variable that holds a secret -> (its file under /run/secrets, the variable naming that file)."""
_FILE_LABEL = "twi-asr.secret"
_DIGEST_LABEL = "twi-asr.secret-digest"
_ROUNDS = 200_000


def split_secrets(env: dict[str, str], api_key: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """(the environment without secrets but with their ``*_FILE`` paths, file name -> secret value).

    ``api_key`` wins over a ``TWI_ASR_API_KEY`` in ``env``.
    """
    plain = dict(env)
    files: dict[str, str] = {}
    for variable, (filename, pointer) in SECRET_VARIABLES.items():
        value = plain.pop(variable, None)
        if value:
            files.setdefault(filename, value)
            plain[pointer] = f"{SECRETS_DIR}/{filename}"
    if api_key:
        files[API_KEY_FILE] = api_key
        plain["TWI_ASR_API_KEY_FILE"] = f"{SECRETS_DIR}/{API_KEY_FILE}"
    return plain, files


def server_env(
    env: dict[str, str] | None, *, model: str | None, api_key: str | None, image_id: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """The server's environment in a container or service, and its secrets (file name -> value).

    The user's ``--env`` plus our settings; every secret (``api_key``, and a
    ``TWI_ASR_API_KEY`` or ``HF_TOKEN`` in ``env``) is taken out and replaced
    by the path of its file under /run/secrets (see :mod:`.secrets`).
    ``image_id`` becomes ``TWI_ASR_IMAGE_ID`` (what ``/health`` reports).
    """
    environment, files = split_secrets(dict(env or {}), api_key)
    environment["TWI_ASR_PORT"] = str(CONTAINER_PORT)
    if model:
        environment["TWI_ASR_MODEL"] = model
    if image_id:
        environment["TWI_ASR_IMAGE_ID"] = image_id
    return environment, files


def host_secrets_dir() -> Path:
    """This user's private folder for container secrets: ``$XDG_RUNTIME_DIR`` (memory), else the cache."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "twi-asr" / "secrets"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "twi-asr" / "secrets"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for part in (path.parent, path):
        if part.stat().st_uid == os.getuid():
            part.chmod(0o700)
    return path


def write_container_secrets(name: str, files: dict[str, str]) -> dict[str, dict[str, str]]:
    """Write ``files`` for container ``name``; docker-py ``volumes`` that mount each read-only."""
    folder = host_secrets_dir() / name
    remove_container_secrets(name)
    if not files:
        return {}
    _private_dir(folder)
    volumes: dict[str, dict[str, str]] = {}
    for filename, value in files.items():
        path = folder / filename
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(value)
        path.chmod(0o644)  # the container's uid reads it; the 0700 folder keeps the host's users out
        volumes[str(path)] = {"bind": f"{SECRETS_DIR}/{filename}", "mode": "ro"}
    return volumes


def remove_container_secrets(name: str) -> None:
    """Remove the secret files of container ``name`` (nothing when there are none)."""
    folder = host_secrets_dir() / name
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ swarm
def _digest(value: str, salt: str) -> str:
    raw = hashlib.pbkdf2_hmac("sha256", value.encode("utf-8"), bytes.fromhex(salt), _ROUNDS)
    return f"pbkdf2-sha256${_ROUNDS}${salt}${raw.hex()}"


def _matches(value: str, label: str) -> bool:
    parts = label.split("$")
    if len(parts) != 4 or parts[0] != "pbkdf2-sha256" or parts[1] != str(_ROUNDS):
        return False
    return hmac.compare_digest(_digest(value, parts[2]), label)


def _reference(secret: Any, filename: str) -> Any:
    from docker.types import SecretReference

    return SecretReference(secret.id, secret.name, filename=filename, uid="10001", gid="10001", mode=0o400)


def service_secret_refs(
    dc: DockerClient, service: str, files: dict[str, str], current: list[dict[str, Any]] | None = None
) -> list[Any]:
    """Secret references for ``service``: the ones in ``current`` whose value is unchanged, new ones else.

    ``current`` is the service's ``ContainerSpec.Secrets`` (None for a new
    service); its references to files not in ``files`` are kept as they are.
    """
    from docker.errors import NotFound

    refs: list[Any] = []
    wanted = dict(files)
    for ref in current or []:
        filename = str((ref.get("File") or {}).get("Name") or "")
        if filename not in wanted:
            refs.append(ref)
            continue
        with _mapped(f"inspecting the secrets of service {service}"):
            try:
                secret = dc.secrets.get(ref.get("SecretID"))
            except NotFound:
                continue  # gone: a new one below
        labels = (secret.attrs.get("Spec") or {}).get("Labels") or {}
        if _matches(wanted[filename], str(labels.get(_DIGEST_LABEL) or "")):
            refs.append(ref)
            del wanted[filename]
    for filename, value in wanted.items():
        salt = _random.token_hex(16)
        labels = {
            **_LABELS,
            SERVICE_LABEL: service,
            _FILE_LABEL: filename,
            _DIGEST_LABEL: _digest(value, salt),
        }
        name = f"{service[:40]}-{filename.replace('_', '-')}-{_random.token_hex(4)}"
        with _mapped(f"creating the secret {filename} of service {service}"):
            secret = dc.secrets.create(name=name, data=value.encode("utf-8"), labels=labels)
            secret.reload()
        refs.append(_reference(secret, filename))
    return refs


def remove_service_secrets(dc: DockerClient, service: str, keep: list[Any] | None = None) -> None:
    """Remove our secrets of ``service`` except those ``keep`` references (all of them by default).

    One still in use (a task shutting down) is left for the next call; never raises.
    """
    kept = {str(ref.get("SecretID")) for ref in keep or []}
    with contextlib.suppress(Exception):
        found = dc.secrets.list(filters={"label": f"{SERVICE_LABEL}={service}"})
        for secret in found:
            labels = (secret.attrs.get("Spec") or {}).get("Labels") or {}
            if labels.get(MANAGED_LABEL) == "true" and secret.id not in kept:
                with contextlib.suppress(Exception):
                    secret.remove()
