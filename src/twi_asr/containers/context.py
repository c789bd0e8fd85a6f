"""A build context as a tar file on disk: the checkout (as ``.dockerignore`` allows) plus a model folder.

``twi-asr docker build --model /path/to/checkpoint`` sends the folder inside the
context at ``docker/model-context/``, where the Dockerfile's ``convert`` stage
finds it (``MODEL=/build/model-context``). The tar is the one docker-py would
make from the folder (the same ``.dockerignore`` rules, the same file list and
headers, so the cached layers stay valid), with the placeholder in
``docker/model-context/`` replaced by the model's files. Symlinks in the model
folder (a Hugging Face cache snapshot is all symlinks) are followed. It is
written to a temporary file, never held in memory: a checkpoint can be GBs.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from ..errors import UsageError

MODEL_CONTEXT = "docker/model-context"
"""Where a local model folder goes inside the build context."""
MODEL_ARG = "/build/model-context"
"""``MODEL`` for a model sent in the context: where the convert stage has it."""


def dockerignore_patterns(context: Path) -> list[str]:
    """``.dockerignore``'s patterns, read as docker-py reads them (no blanks, no ``#`` comments)."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def context_files(context: Path, dockerfile: str) -> list[str]:
    """The paths (files and folders, relative, sorted) that ``.dockerignore`` lets into the context."""
    from docker.utils.build import exclude_paths

    patterns = dockerignore_patterns(context)
    return sorted(exclude_paths(str(context.resolve()), patterns, dockerfile=dockerfile))


def _in_model_context(rel: str) -> bool:
    return rel == MODEL_CONTEXT or rel.startswith(MODEL_CONTEXT + "/")


def _model_members(model_dir: Path) -> list[tuple[Path, str]]:
    """(real path, name in the tar) of every folder and file under ``model_dir``, symlinks followed."""
    out: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(model_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(model_dir)
        for name in sorted(filenames):
            if name.startswith("."):  # .gitattributes, .cache/ lock files: not the model
                continue
            out.append((Path(dirpath) / name, f"{MODEL_CONTEXT}/{(rel_dir / name).as_posix()}"))
        for name in dirnames:
            out.append((Path(dirpath) / name, f"{MODEL_CONTEXT}/{(rel_dir / name).as_posix()}"))
    return sorted(out, key=lambda pair: pair[1])


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tar.gettarinfo(str(path), arcname=arcname)
    if info is None:  # a socket or the like: nothing a build can use
        return
    if info.mtime < 0 or info.mtime > 8**11 - 1:  # as docker-py does (bpo-32713)
        info.mtime = int(info.mtime)
    if info.isfile():
        with path.open("rb") as fh:
            tar.addfile(info, fh)
    else:
        tar.addfile(info)


def write_context(context: Path, dockerfile: str, *, model_dir: Path | None = None) -> IO[bytes]:
    """The build context of ``context`` as an uncompressed tar in a temporary file, rewound.

    With ``model_dir`` the folder's files replace whatever ``docker/model-context/``
    holds. The caller closes the file (it is deleted then).
    """
    context = Path(context)
    if model_dir is not None:
        model_dir = Path(model_dir).resolve()
        if not model_dir.is_dir():
            raise UsageError(f"--model {model_dir}: no such folder")
    files = context_files(context, dockerfile)
    if model_dir is not None and not any(_in_model_context(rel) for rel in files):
        raise UsageError(
            f"{context / '.dockerignore'} keeps {MODEL_CONTEXT}/ out of the build context: "
            f"add a `!{MODEL_CONTEXT}/` line"
        )
    fh = tempfile.TemporaryFile(prefix="twi-asr-context-", suffix=".tar")  # noqa: SIM115 - the caller's
    try:
        with tarfile.open(fileobj=fh, mode="w") as tar:
            for rel in files:
                if model_dir is not None and _in_model_context(rel) and rel != MODEL_CONTEXT:
                    continue
                _add(tar, context / rel, rel)
            if model_dir is not None:
                tar.dereference = True  # the model's symlinks (hub cache) are followed, the checkout's not
                for path, arcname in _model_members(model_dir):
                    _add(tar, path, arcname)
    except BaseException:
        fh.close()
        raise
    fh.seek(0)
    return fh
