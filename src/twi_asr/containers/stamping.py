"""``twi-asr docker build``: the image built, labelled with where it came from, with the model baked in.

One call does it all: the provenance (commit, version, time, source, the lock's
sha256) goes in as labels and as the ``GIT_COMMIT``/``BUILD_CREATED``/``SOURCE_URL``
build arguments; the model (``--model``) goes in as the ``MODEL`` build argument
or, for a local folder, inside the build context; after the build, the lock and
the baked model's ``twi-asr-model.json`` are read back from the image (never
run) to check the lock label and to stamp the weights hash with a metadata-only
second build. A private hub model (``HF_TOKEN`` set here) or an ``s3://`` one
is downloaded on this machine and sent as a folder, so no credential ever enters
the build (build arguments stay in ``docker history``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from . import labels as L
from .context import MODEL_ARG, write_context
from .errors import ImageBuildError, _dc
from .images import build_image, read_files, relabel

if TYPE_CHECKING:
    from docker import DockerClient


@dataclass(frozen=True)
class ModelPlan:
    """How ``--model`` reaches the build: a ``MODEL`` value, and a folder to send when it is local."""

    build_arg: str
    folder: Path | None
    """Sent in the context at ``docker/model-context/`` (``build_arg`` is then ``/build/model-context``)."""
    label: str
    """The ``io.twi-asr.model.source`` label: the alias or hub id, ``s3://...`` or ``local:<folder>``."""


@dataclass(frozen=True)
class BuildResult:
    """What ``twi-asr docker build`` made: the image, its labels, and what it said along the way."""

    image_id: str
    tag: str
    labels: dict[str, str]
    notes: list[str] = field(default_factory=list)


def _hub_token() -> bool:
    return any(os.environ.get(k, "").strip() for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"))


def plan_model(spec: str) -> ModelPlan:
    """Where ``spec`` is resolved: in the build (public names) or here (folders, private, s3://).

    A bundled alias (``tiny.en``) or a public hub id/alias is the ``MODEL``
    build argument, as ``docker build --build-arg MODEL=...`` would be. A local
    folder is sent in the context. With ``HF_TOKEN`` set a hub model may be
    private: it is resolved here (:func:`twi_asr.models.resolve_model`) and sent
    as a folder. So is an ``s3://`` model (its credentials stay here too).
    """
    from ..models import ALIASES, resolve_model

    path = Path(spec).expanduser()
    if path.is_dir():
        return ModelPlan(MODEL_ARG, path.resolve(), f"local:{path.resolve().name}")
    alias = ALIASES.get(spec)
    if alias is not None and alias.source.startswith("package:"):
        return ModelPlan(spec, None, spec)
    if spec.startswith("s3://") or (_hub_token() and (alias is not None or "/" in spec)):
        resolved = resolve_model(spec)
        label = spec if alias is None else f"{spec} ({resolved.source})"
        return ModelPlan(MODEL_ARG, resolved.path, label)
    return ModelPlan(spec, None, spec if alias is None else f"{spec} (hf://{alias.source})")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_server_image(
    context: Path,
    *,
    tag: str,
    dockerfile: str = "Dockerfile",
    build_args: dict[str, str] | None = None,
    model: str | None = None,
    source: str | None = None,
    on_line: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    pull: bool = False,
    no_cache: bool = False,
    docker_client: DockerClient | None = None,
) -> BuildResult:
    """Build, label and check the image ``tag`` of ``context`` (see the module's docstring).

    Raises :class:`~twi_asr.errors.UsageError` for a build argument that looks
    like a secret, and :class:`ImageBuildError` when the lock in the image is
    not the lock the labels name (a Dockerfile that installs another one).
    """
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if on_note is not None:
            on_note(message)

    context = Path(context)
    if not (context / dockerfile).is_file():
        raise UsageError(f"{context / dockerfile}: no such Dockerfile (pass --context or --file)")
    args = dict(build_args or {})
    L.check_build_args(args)
    plan = plan_model(model) if model else None
    if plan is not None:
        args["MODEL"] = plan.build_arg
        if plan.folder is not None:
            note(f"sending the model folder {plan.folder} in the build context")
    stamp = L.make_stamp(context, dockerfile, args, source=source)
    if stamp.commit == "unknown":
        note(f"{context} is not a git checkout: the revision label is 'unknown'")
    elif stamp.dirty:
        note(f"the checkout has uncommitted changes: the revision label is {stamp.commit}")
    if stamp.lock is None:
        note(f"cannot tell which lock {dockerfile} installs: no {L.LOCK_SHA256} label")
    elif stamp.lock_sha256 is None:
        note(f"{context / stamp.lock} is missing: no {L.LOCK_SHA256} label")
    args.update(stamp.build_args())
    dc = _dc(docker_client)
    tar = write_context(context, dockerfile, model_dir=plan.folder) if plan and plan.folder else None
    try:
        first = build_image(
            context,
            tag=tag,
            dockerfile=dockerfile,
            build_args=args,
            on_line=on_line,
            pull=pull,
            no_cache=no_cache,
            labels=stamp.labels(),
            fileobj=tar,
            docker_client=dc,
        )
    finally:
        if tar is not None:
            tar.close()

    found = read_files(first, [L.IMAGE_LOCK, L.MODEL_JSON], docker_client=dc)
    lock_bytes = found.get(L.IMAGE_LOCK)
    if lock_bytes is not None and stamp.lock_sha256 and _sha(lock_bytes) != stamp.lock_sha256:
        raise ImageBuildError(
            f"the lock in {tag} ({L.IMAGE_LOCK}, sha256 {_sha(lock_bytes)[:12]}) is not {stamp.lock} "
            f"(sha256 {stamp.lock_sha256[:12]}): {dockerfile} installs another lock than its label "
            "would say; pass --file and --build-arg ENGINES=... that match"
        )
    if lock_bytes is None:
        note(f"{tag} has no {L.IMAGE_LOCK}: `twi-asr docker verify` cannot check its packages")
    weights_hash = source_label = None
    if L.MODEL_JSON in found:
        try:
            card = json.loads(found[L.MODEL_JSON])
        except ValueError:
            card = {}
        weights_hash = str(card.get("weights_hash") or "") or None
        source_label = plan.label if plan is not None else str(card.get("source") or "") or None
    elif plan is not None:
        note(f"{tag} has no {L.MODEL_JSON}: the model labels say {L.NO_MODEL}")
    model_labels = L.model_labels(source_label, weights_hash)
    final = relabel(first, model_labels, tag=tag, on_line=on_line, docker_client=dc)
    return BuildResult(image_id=final, tag=tag, labels={**stamp.labels(), **model_labels}, notes=notes)
