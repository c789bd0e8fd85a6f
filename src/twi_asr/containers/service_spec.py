"""What ``scale`` puts in a swarm service's task template: environment, secrets, hardened runtime.

A new service gets all three (:func:`new_service_kwargs`). An existing one is
brought in line by :func:`task_changes`: a new image's id, a changed secret
(a new Docker secret; the old one goes once the update is in), and the
hardened runtime when the service lacks it or other limits are asked for.
The replicas, the image and the ports stay :func:`.swarm.scale`'s business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hardening import Limits, service_is_hardened, service_kwargs
from .secrets import SECRET_VARIABLES, SECRETS_DIR, server_env, service_secret_refs

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.services import Service


def new_service_kwargs(
    dc: DockerClient,
    name: str,
    *,
    image_id: str,
    env: dict[str, str] | None,
    model: str | None,
    api_key: str | None,
    limits: Limits,
    models_volume: str | None,
) -> dict[str, Any]:
    """``services.create`` kwargs for the env (secrets as file paths), the secrets and the hardening.

    Creates the Docker secrets; the caller removes them
    (:func:`.secrets.remove_service_secrets`) if the service is not created.
    """
    environment, files = server_env(env, model=model, api_key=api_key, image_id=image_id)
    return {
        "env": [f"{k}={v}" for k, v in environment.items()],
        "secrets": service_secret_refs(dc, name, files),
        **service_kwargs(limits, models_volume=models_volume),
    }


def _env_dict(entries: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries or []:
        key, _, value = str(entry).partition("=")
        out[key] = value
    return out


def task_changes(
    dc: DockerClient,
    service: Service,
    *,
    new_image_id: str | None,
    env: dict[str, str] | None,
    api_key: str | None,
    memory: str | int | None,
    cpus: str | float | None,
    engine_cpus: int | None,
    models_volume: str | None,
) -> dict[str, Any]:
    """``service.update`` kwargs that bring an existing service's tasks in line; {} when they are.

    Only the secrets (``api_key``, secret variables in ``env``) of the call
    count; other ``env`` and the model stay as the service was created.
    ``memory`` / ``cpus`` None keep the service's current limits (the
    defaults when it has none).
    """
    spec = service.attrs.get("Spec") or {}
    task = spec.get("TaskTemplate") or {}
    container = task.get("ContainerSpec") or {}
    current = (task.get("Resources") or {}).get("Limits") or {}
    asked = Limits.resolve(memory, cpus, engine_cpus)
    limits = Limits(
        memory_bytes=asked.memory_bytes
        if memory is not None
        else current.get("MemoryBytes") or asked.memory_bytes,
        nano_cpus=asked.nano_cpus if cpus is not None else current.get("NanoCPUs") or asked.nano_cpus,
    )
    changes: dict[str, Any] = {}
    env_now = _env_dict(container.get("Env"))
    env_new = dict(env_now)
    if new_image_id:
        env_new["TWI_ASR_IMAGE_ID"] = new_image_id
    _, files = server_env(
        {k: v for k, v in (env or {}).items() if k in SECRET_VARIABLES}, model=None, api_key=api_key
    )
    if files:
        refs_now = list(container.get("Secrets") or [])
        refs = service_secret_refs(dc, str(service.name), files, current=refs_now)
        if [r.get("SecretID") for r in refs] != [r.get("SecretID") for r in refs_now]:
            changes["secrets"] = refs
        for filename in files:
            for variable, (name, pointer) in SECRET_VARIABLES.items():
                if name == filename:
                    env_new.pop(variable, None)
                    env_new[pointer] = f"{SECRETS_DIR}/{filename}"
    if env_new != env_now:
        changes["env"] = [f"{k}={v}" for k, v in env_new.items()]
    if not service_is_hardened(container, task.get("Resources") or {}, limits, models_volume=models_volume):
        changes.update(service_kwargs(limits, models_volume=models_volume))
    return changes
