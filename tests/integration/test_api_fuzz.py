"""The HTTP contracts, fuzzed: schemathesis against ``/openapi.json`` of a real 8001 and a real 8000.

What is real: ``twi-asr serve --model tiny.en`` with an API key, and ``twi-asr backend serve`` on a
fresh PostgreSQL database in front of it (SQLite when the session has no PostgreSQL binaries),
both on loopback ports. Schemathesis reads each server's own OpenAPI document and sends every
operation generated requests, valid and invalid, with the right bearer key (and without it, to
see the 401). File parts get random bytes, schemathesis's sample files (png, pdf, zip...) and
real speech (wav, flac, a clip too short to transcribe), so both the refusals and real
transcripts are checked. Every answer must be a non-5xx that its own schema documents: status
code, content type, headers and body (schemathesis's default checks, all of them).

Two checks are relaxed, only where the schema cannot decide: "a schema-valid request is accepted"
(positive_data_acceptance) is skipped for the operations in :data:`NO_ACCEPTANCE`, and "a
schema-invalid request is refused" (negative_data_rejection) for a form that is valid as sent: a
number in a text field arrives as valid text, "0" in a number field as a number (:func:`_valid_as_sent`).

The servers start in fixtures, so the schema cannot be loaded at import time, and the lazy pytest
loader (``schemathesis.pytest.from_fixture``) fails on pytest 9 (it sets ``Function._nodeid``):
the test drives schemathesis's Python API, one Hypothesis run per operation and mode.

``TWI_ASR_FUZZ_EXAMPLES`` (default 25: under a minute on 2 cores, servers included) bounds the
examples per operation and generation mode; raise it for a longer hunt:
``TWI_ASR_FUZZ_EXAMPLES=300 pytest tests/integration/test_api_fuzz.py`` (a few minutes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.core.result import Err

from .backend.harness import Backend, backend_env, create_user, start_backend, stop_backend
from .conftest import speak
from .postgres import start_postgres
from .services import EASY_SENTENCES, Server, start_server, stop_server

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("TWI_ASR_FUZZ_EXAMPLES", "25"))
ASR_KEY = "fuzz-" + uuid.uuid4().hex
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run: a CI failure reproduces locally
    suppress_health_check=list(HealthCheck),
    database=None,
)
TIMEOUT_S = 60
_AUDIO = "the file must be audio that decodes, which no schema can say"
# Operation -> why a request its schema allows may still be refused (4xx).
NO_ACCEPTANCE = {
    "POST /v1/audio/transcriptions": _AUDIO,
    "POST /v1/audio/translations": _AUDIO,
    "POST /v1/jobs": "the file part's declared type must be audio or video (415), and not empty",
    "POST /v1/uploads": "the announced type must be audio or video (415), the size under the server's limit",
    "GET /v1/jobs": "cursor is an opaque token from an earlier page",
}


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Real speech among the generated file parts: a wav and a flac of one sentence, and 50 ms."""
    from schemathesis.core.file_samples import FILE_SAMPLES
    from schemathesis.specs.openapi.formats import unregister_string_format

    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH: install it (apt-get install {tool}); .ci/run does")
    folder = tmp_path_factory.mktemp("fuzz-audio")
    wav = speak(EASY_SENTENCES[1], folder / "speech.wav")
    flac, short = folder / "speech.flac", folder / "short.wav"
    for args in (["-i", wav, flac], ["-i", wav, "-t", "0.05", short]):
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    clips = [p.read_bytes() for p in (wav, flac, short)]
    schemathesis.openapi.format(
        "binary", st.one_of(st.sampled_from(clips), st.sampled_from(list(FILE_SAMPLES.values())), st.binary())
    )
    yield
    unregister_string_format("binary")


@pytest.fixture(scope="module")
def asr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """8001 with tiny.en and an API key (so the key header is part of what is fuzzed)."""
    server = start_server(tmp_path_factory.mktemp("fuzz-asr") / "asr.log", env={"TWI_ASR_API_KEY": ASR_KEY})
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def backend(asr: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Backend, str]]:
    """8000 on PostgreSQL (SQLite without the binaries) in front of :func:`asr`, and an admin's key."""
    folder = tmp_path_factory.mktemp("fuzz-backend")
    with contextlib.ExitStack() as stack:
        database: str | None = None
        with contextlib.suppress(pytest.skip.Exception):
            pg = start_postgres(folder / "pg")
            stack.callback(pg.close)
            database = pg.new_database("fuzz")
        env = backend_env(folder / "data", database_url=database, extra={"TWI_ASR_ASR_API_KEY": ASR_KEY})
        key = create_user(env, f"fuzz-admin-{uuid.uuid4().hex[:8]}", admin=True)
        proc = start_backend(folder / "backend.log", env, [asr.url], "--workers", "1")
        stack.callback(stop_backend, proc)
        yield proc, key


def _mutations(case: Any) -> tuple[Any, ...]:
    """What makes a negative case invalid (empty for a positive one)."""
    data = getattr(getattr(case.meta, "phase", None), "data", None)
    return tuple(getattr(data, "mutations", None) or ())


def _tests_the_key(case: Any) -> bool:
    """A case made without the Authorization header, or with a wrong one: it goes as generated, so
    the server must refuse it, instead of carrying our key."""
    return any(
        m.parameter_location == "header" and (m.parameter or "").lower() == "authorization"
        for m in _mutations(case)
    )


def _valid_as_sent(case: Any) -> bool:
    """True when a generated "invalid" form is valid as the server reads it. A form field is text on
    the wire: a number sent to a text field, or the string "0" sent to a number field, arrives as
    valid text that reads as a valid value. Schemathesis judges the generated value (and cannot
    read forms that carry a file), so this reads each mutated field the way it is sent."""
    import jsonschema

    mutations = _mutations(case)
    if case.media_type != "multipart/form-data" or not mutations or not isinstance(case.body, dict):
        return False
    body = case.operation.get_body_for_media_type(case.media_type)
    form = body.optimized_schema if body is not None else {}
    fields = form.get("properties", {})
    for m in mutations:
        field, value = fields.get(m.parameter), case.body.get(m.parameter)
        if list(m.path) != [m.parameter] or m.parameter not in case.body or not isinstance(field, dict):
            return False
        if field.get("format") == "binary" or "contentMediaType" in field:
            return False  # a file part is not text
        if isinstance(value, list):  # one part per item; the server reads the last (none: not sent)
            if not value:
                if m.parameter in form.get("required", ()):
                    return False
                continue
            value = value[-1]
        text = value if isinstance(value, str) else json.dumps(value)
        readings: list[Any] = [text]
        with contextlib.suppress(ValueError):
            readings.append(json.loads(text))
        if not any(jsonschema.Draft202012Validator(field).is_valid(r) for r in readings):
            return False
    return True


def hunt(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> str | None:
    """Up to EXAMPLES generated requests to one operation in one mode; what went wrong, or None."""
    excluded = [positive_data_acceptance] if operation.label in NO_ACCEPTANCE else []

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        skip = [negative_data_rejection] if _valid_as_sent(case) else []
        key = None if _tests_the_key(case) else headers
        case.call_and_validate(headers=key, excluded_checks=excluded + skip, timeout=TIMEOUT_S)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (no parameters, or only free-form strings)
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # schemathesis's FailureGroup is a BaseExceptionGroup
        return f"{operation.label} [{mode.value}]: {exc}"
    return None


def fuzz(url: str, headers: dict[str, str]) -> list[str]:
    """Every operation of ``url``'s OpenAPI document, with valid then invalid generated requests;
    each finding as one entry: the operation, the mode and what schemathesis reported."""
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    found: list[str | None] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # an operation schemathesis cannot read is a finding too
            found.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()
        found += [
            hunt(operation, mode, headers) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
    return [f for f in found if f]


def test_asr_contract(asr: Server, audio_files: None) -> None:
    """Every 8001 operation answers within its documented contract."""
    failures = fuzz(asr.url, {"Authorization": f"Bearer {ASR_KEY}"})
    assert not failures, "\n\n".join(failures) + "\n\n8001 log:\n" + asr.log_tail()


def test_backend_contract(backend: tuple[Backend, str], audio_files: None) -> None:
    """Every 8000 operation answers within its documented contract."""
    proc, key = backend
    failures = fuzz(proc.url, {"Authorization": f"Bearer {key}"})
    assert not failures, "\n\n".join(failures) + "\n\n8000 log:\n" + proc.log_tail()
