"""``twi-asr docker build``: an image from a Dockerfile, its output streamed line by line.

Through docker-py's low-level ``api.build`` (the engine's legacy builder); a
failed step raises :class:`~twi_asr.containers.errors.ImageBuildError` with
that step's last lines.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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
    docker_client: DockerClient | None = None,
) -> str:
    """Build ``context`` into ``tag`` and return the image id, streaming the build output.

    Each output line goes to ``on_line`` as it arrives (docker-py's low-level
    ``api.build(decode=True)``; the high-level one waits for the end). On an
    error chunk raises :class:`ImageBuildError` naming the failing step, with
    its last ~20 lines. The engine's API build is the legacy builder: the
    Dockerfile must not need BuildKit-only syntax (``RUN --mount``, heredocs).
    """
    context = Path(context)
    if not context.is_dir():
        raise UsageError(f"--context {context}: no such folder")
    if not (context / dockerfile).is_file():
        raise UsageError(f"{context / dockerfile}: no such Dockerfile (pass --context or --file)")
    dc = _dc(docker_client)
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
        stream = dc.api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            buildargs=dict(build_args or {}),
            decode=True,
            rm=True,
            forcerm=True,
            pull=pull,
            nocache=no_cache,
        )
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
