"""Images: a build from a Dockerfile, its output streamed line by line; files and labels read back.

Through docker-py's low-level ``api.build`` (the engine's legacy builder); a
failed step raises :class:`~twi_asr.containers.errors.ImageBuildError` with
that step's last lines. :func:`build_image` is one build; :func:`relabel`
adds labels to a built image; :func:`read_files` and :func:`image_labels` read
one back without running it. ``twi-asr docker build`` puts them together
(:mod:`.stamping`).
"""

from __future__ import annotations

import io
import re
import tarfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import UsageError
from .common import _BUILD_TAIL
from .errors import ImageBuildError, _dc, _mapped

if TYPE_CHECKING:
    from docker import DockerClient


_STEP = re.compile(r"^Step \d+/\d+ : ")


def build_image(
    context: Path,
    *,
    tag: str,
    dockerfile: str = "Dockerfile",
    build_args: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    pull: bool = False,
    no_cache: bool = False,
    labels: dict[str, str] | None = None,
    fileobj: IO[bytes] | None = None,
    docker_client: DockerClient | None = None,
) -> str:
    """Build ``context`` into ``tag`` and return the image id, streaming the build output.

    Each output line goes to ``on_line`` as it arrives (docker-py's low-level
    ``api.build(decode=True)``; the high-level one waits for the end). On an
    error chunk raises :class:`ImageBuildError` naming the failing step, with
    its last ~20 lines. The engine's API build is the legacy builder: the
    Dockerfile must not need BuildKit-only syntax (``RUN --mount``, heredocs).
    ``labels`` are stamped on the image; ``fileobj`` is a ready tar of the
    context (:func:`.context.write_context`) sent instead of ``context`` itself.
    """
    context = Path(context)
    if not context.is_dir():
        raise UsageError(f"--context {context}: no such folder")
    if not (context / dockerfile).is_file():
        raise UsageError(f"{context / dockerfile}: no such Dockerfile (pass --context or --file)")
    request: dict[str, Any] = (
        {"fileobj": fileobj, "custom_context": True} if fileobj is not None else {"path": str(context)}
    )
    request.update(dockerfile=dockerfile, buildargs=dict(build_args or {}), pull=pull, nocache=no_cache)
    if labels:
        request["labels"] = dict(labels)
    return _stream_build(_dc(docker_client), tag, request, on_line)


def _stream_build(
    dc: DockerClient, tag: str, request: dict[str, Any], on_line: Callable[[str], None] | None
) -> str:
    """``dc.api.build(**request)`` into ``tag``, its lines to ``on_line``; the image id."""
    emit = on_line or (lambda _line: None)
    step: str | None = None
    tail: deque[str] = deque(maxlen=_BUILD_TAIL)
    seen_ids: list[str] = []
    image_id: str | None = None
    pending = ""

    def line_out(line: str) -> None:
        nonlocal step
        line = line.rstrip("\r")
        if not line.strip():
            return
        if _STEP.match(line):
            step = line
            tail.clear()
        if not line.startswith("Removing intermediate container"):
            tail.append(line)
        found = re.match(r"^Successfully built ([0-9a-f]+)", line)
        if found:
            seen_ids.append(found.group(1))
        emit(line)

    with _mapped(f"building {tag}", image=tag):
        stream = dc.api.build(**request, tag=tag, decode=True, rm=True, forcerm=True)
        for chunk in stream:
            if "stream" in chunk:
                pending += str(chunk["stream"])
                while "\n" in pending:
                    line, pending = pending.split("\n", 1)
                    line_out(line)
            elif "error" in chunk or "errorDetail" in chunk:
                if pending:
                    line_out(pending)
                    pending = ""
                detail = chunk.get("errorDetail") or {}
                message = str(chunk.get("error") or detail.get("message") or "unknown error").strip()
                raise ImageBuildError(_build_failure(tag, step, message), step=step, log_tail=list(tail))
            elif "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                image_id = str(chunk["aux"]["ID"])
            elif "status" in chunk and "progress" not in chunk:
                status = str(chunk["status"])
                line_out(f"{chunk['id']}: {status}" if chunk.get("id") else status)
        if pending:
            line_out(pending)
        if image_id is None and seen_ids:
            image_id = seen_ids[-1]
        if image_id is None:
            image_id = str(dc.images.get(tag).id)
    return image_id


def _build_failure(tag: str, step: str | None, message: str) -> str:
    where = f"at {step[:120]}" if step else "before the first step"
    hint = ""
    low = message.lower()
    pull_failures = (
        "pull access denied",
        "registry-1.docker.io",
        "manifest unknown",
        "repository does not exist",
        "no such host",
    )
    if any(s in low for s in pull_failures):
        hint = " (the base image cannot be pulled: pass --base-image with an image this engine has)"
    return f"docker build of {tag} failed {where}: {message.splitlines()[0][:300]}{hint}"


def dockerfile_context(dockerfile: str) -> io.BytesIO:
    """A build context holding only ``Dockerfile`` (for ``custom_context=True`` builds)."""
    data = dockerfile.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def relabel(
    image_id: str,
    labels: dict[str, str],
    *,
    tag: str,
    on_line: Callable[[str], None] | None = None,
    docker_client: DockerClient | None = None,
) -> str:
    """``FROM image_id`` + ``labels``, tagged ``tag``: a metadata-only image (no layer content).

    How a label is added once the build has made what it describes (the baked
    model's hash). Returns the new image id.
    """
    dc = _dc(docker_client)
    buf = dockerfile_context(f"FROM {image_id}\n")
    request = {"fileobj": buf, "custom_context": True, "labels": dict(labels), "dockerfile": "Dockerfile"}
    return _stream_build(dc, tag, request, on_line)


def read_files(
    image: str, paths: list[str], *, docker_client: DockerClient | None = None
) -> dict[str, bytes]:
    """The bytes of each of ``paths`` that exists in ``image`` (absent ones are left out).

    Through a created, never started container (``get_archive``): nothing in the image runs.
    """
    from docker.errors import NotFound

    dc = _dc(docker_client)
    out: dict[str, bytes] = {}
    with _mapped(f"reading files of {image}", image=image):
        container = dc.containers.create(image, entrypoint=["true"], network_disabled=True)
        try:
            for path in paths:
                try:
                    chunks, _stat = container.get_archive(path)
                except NotFound:
                    continue
                data = io.BytesIO(b"".join(chunks))
                with tarfile.open(fileobj=data) as tar:
                    member = tar.extractfile(Path(path).name)
                    if member is not None:
                        out[path] = member.read()
        finally:
            container.remove(force=True, v=True)
    return out


def image_labels(image: str, *, docker_client: DockerClient | None = None) -> tuple[str, dict[str, str]]:
    """(id, labels) of ``image``; exit 3 with `twi-asr docker build` advice when it is not there."""
    dc = _dc(docker_client)
    with _mapped(f"inspecting image {image}", image=image):
        found = dc.images.get(image)
    config = (found.attrs or {}).get("Config") or {}
    return str(found.id), dict(config.get("Labels") or {})
