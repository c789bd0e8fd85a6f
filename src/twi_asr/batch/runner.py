"""Plan a batch run, drive the engine (local, remote servers, or a container), write, record, report.

The order of a run:

1. Check what can fail cheaply first: references file, sources, OUT (a
   missing bucket is exit 3 before any model loads).
2. Plan: each input's content id (SHA-256, or the S3 ETag) against the
   ledger; done inputs are skipped (``--no-resume`` redoes them).
3. Work: the local engine through :func:`twi_asr.pipeline.run_pipeline`
   (cross-file batches, decoding one batch ahead), or :class:`ServerPool`
   over ``--server`` URLs (or the container ``--docker`` starts).
4. Each finished input: outputs written atomically to OUT, then its ledger
   line, then the progress display.
5. At the end, also after Ctrl-C/SIGTERM or when every server died: the
   ledger is flushed, scores and gates computed, the JSON report, JUnit
   XML and HTML page written. Then the interrupt or error goes on to the CLI's error
   boundary (130, 3), or the report's exit code is used (0 or 1).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_MODEL
from ..errors import InputError, InputNotFoundError, TwiAsrError, UsageError
from ..types import TranscribeOptions
from .dispatch import Outcome
from .ledger import Ledger, config_fingerprint, content_id
from .records import FileRecord
from .references import load_references, match_references
from .report import BatchReport, evaluate_gates, score_records, write_file_atomic
from .sources import expand_sources

if TYPE_CHECKING:
    from ..engines.base import Transcriber
    from ..sinks import OutputSink
    from ..storage import InputItem
    from .dispatch import ServerPool

__all__ = ["BatchConfig", "run_batch"]

log = logging.getLogger(__name__)


@dataclass
class BatchConfig:
    """Everything ``twi-asr batch`` was asked to do."""

    sources: list[str]
    out: str
    formats: tuple[str, ...] = ("txt",)
    options: TranscribeOptions = field(default_factory=TranscribeOptions)
    model: str | None = None  # None: DEFAULT_MODEL locally, the image's own model with --docker
    engine: str = "auto"
    device: str = "auto"
    compute_type: str = "default"
    batch_size: int = 0
    long_form: str = "auto"  # over 30 s: vad (cut on silence), sequential, auto
    servers: list[str] = field(default_factory=list)
    api_key: str | None = None
    jobs: int = 4
    docker: bool = False
    image: str = "twi-asr:cpu"
    gpu: bool = False
    docker_name: str = "twi-asr"  # the container --docker starts (or reuses, when ours runs)
    docker_port: int | None = None  # None: any free host port
    docker_timeout_s: float = 300.0  # for the container's model to load
    references: str | None = None
    max_wer: float | None = None
    max_cer: float | None = None
    resume: bool = True
    report: str | None = None
    junit: str | None = None
    report_html: str | None = None  # the self-contained HTML page (twi_asr.report)
    s3_endpoint_url: str | None = None
    progress_every_s: float = 15.0
    interactive: bool | None = None  # None: a bar when stderr is a terminal
    command: str = ""

    def fingerprint(self) -> str:
        """What makes two runs' transcripts interchangeable: model (or "remote") and decoding options."""
        remote = bool(self.servers or self.docker)
        settings = {
            "model": "remote" if remote else (self.model or DEFAULT_MODEL),
            "engine": None if remote else self.engine,
            "long_form": None if remote else self.long_form,
            "options": asdict(self.options),
        }
        return config_fingerprint(settings)


def _utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _say(message: str) -> None:
    from .. import console

    console.info(message, markup=False)


def _plan(
    items: Sequence[InputItem],
    ledger: Ledger,
    sink: OutputSink,
    config: BatchConfig,
    fingerprint: str,
) -> tuple[list[tuple[InputItem, str]], dict[str, FileRecord]]:
    """Split inputs into (to do, with content id) and done earlier (their ledger records)."""
    from ..storage import s3_client

    client = s3_client(config.s3_endpoint_url) if any(i.is_s3 for i in items) else None
    todo: list[tuple[InputItem, str]] = []
    done: dict[str, FileRecord] = {}

    def outputs_exist(names: list[str]) -> bool:
        return bool(names) and all(sink.exists(n) for n in names)

    for item in items:
        cid = content_id(item, s3_client=client)
        prev = (
            ledger.done(item.relative, cid, fingerprint, config.formats, outputs_exist)
            if config.resume
            else None
        )
        if prev is not None:
            done[item.relative] = replace(prev, previous_run=True, source=item.source)
        else:
            todo.append((item, cid))
    return todo, done


def _local_outcomes(
    items: Sequence[InputItem], config: BatchConfig, transcriber: Transcriber | None
) -> Iterator[Outcome]:
    """Local engine: cross-file batches through the one pipeline."""
    from ..pipeline import group_size, run_pipeline

    if transcriber is None:
        from .. import console
        from ..engines import load_transcriber

        with console.stderr.status(f"loading model {config.model or DEFAULT_MODEL} ...", spinner="dots"):
            transcriber = load_transcriber(
                config.model or DEFAULT_MODEL,
                engine=config.engine,
                device=config.device,
                compute_type=config.compute_type,
                batch_size=config.batch_size,
                long_form=config.long_form,
            )
    # An explicit --batch-size is the clips per engine call; auto lets the engine sort a larger group.
    batch = config.batch_size or group_size(getattr(transcriber, "batch_size", 1) or 1)
    for r in run_pipeline(items, transcriber, config.options, batch_size=batch):
        wall = r.transcript.timings.total if r.transcript is not None else 0.0
        yield Outcome(r.item, r.transcript, r.error, r.audio_seconds, wall, None)


def _remote_outcomes(items: Sequence[InputItem], config: BatchConfig, pool: ServerPool) -> Iterator[Outcome]:
    from ..storage import read_bytes

    yield from pool.run(items, config.options, lambda item: read_bytes(item.source))


def _record(outcome: Outcome, cid: str, fingerprint: str, run_id: str) -> FileRecord:
    rec = FileRecord(
        relative=outcome.item.relative,
        source=outcome.item.source,
        status="ok" if outcome.error is None else "failed",
        content=cid,
        config=fingerprint,
        audio_seconds=round(outcome.audio_seconds, 3),
        wall_seconds=round(outcome.wall_seconds, 3),
        server=outcome.server,
        run_id=run_id,
        finished_utc=_utc(),
    )
    if outcome.transcript is not None:
        rec.text = outcome.transcript.text
        rec.language = outcome.transcript.language
    if outcome.error is not None:
        rec.error, rec.error_code = outcome.error.message, outcome.error.code
    return rec


def _probe_audio(items: Sequence[InputItem]) -> float | None:
    """Total audio seconds of local inputs from their headers; None when unknown (S3, odd formats)."""
    from ..audio import probe_duration

    total = 0.0
    for item in items:
        if item.is_s3:
            return None
        total += probe_duration(item.source) or 0.0
    return total or None


def run_batch(
    config: BatchConfig,
    *,
    transcriber: Transcriber | None = None,
    pool_factory: Callable[[list[str]], ServerPool] | None = None,
    on_report: Callable[[BatchReport], None] | None = None,
) -> BatchReport:
    """Do the run described by ``config``; return its report (already written where asked).

    ``transcriber`` (a loaded engine) and ``pool_factory(urls)`` let tests
    and embedding code bring their own; by default the engine is loaded from
    ``config.model`` and servers are reached with :class:`~twi_asr.client.TwiAsrClient`.
    ``on_report(report)`` is called once the report is complete, also
    before ``KeyboardInterrupt`` or an environment error is re-raised (the
    CLI prints its summary there).
    """
    from .. import storage
    from ..sinks import open_sink, output_name, write_outputs

    t_start = time.perf_counter()
    started = _utc()
    run_id = f"{started}-{secrets.token_hex(3)}"
    if config.s3_endpoint_url:
        storage.set_endpoint_url(config.s3_endpoint_url)
    if config.servers and config.docker:
        raise UsageError("--server and --docker do not go together: pick one")
    ref_file = load_references(config.references) if config.references else {}

    src = expand_sources(config.sources)
    if not src.items and not src.missing:
        raise InputError(f"no audio or video files found in {', '.join(config.sources)}")
    matched = match_references([i.relative for i in src.items], ref_file)
    references = {**src.references, **matched.by_input}
    if (config.max_wer is not None or config.max_cer is not None) and not references:
        where = f"none of the keys in {config.references} fit an input" if config.references else "none given"
        raise UsageError(
            f"--max-wer/--max-cer need references ({where}): --references FILE or a manifest text column"
        )
    if references and len(references) < len(src.items):
        _say(f"note: {len(src.items) - len(references)} input(s) have no reference and are not scored")
    if matched.unmatched:
        shown = ", ".join(matched.unmatched[:5])
        _say(f"warning: {len(matched.unmatched)} reference(s) match no input: {shown}")

    sink = open_sink(config.out, endpoint_url=config.s3_endpoint_url)
    ledger = Ledger.open(config.out, sink)
    fingerprint = config.fingerprint()
    todo, earlier = _plan(src.items, ledger, sink, config, fingerprint)
    if earlier:
        _say(f"resuming: {len(earlier)} of {len(src.items)} input(s) already done in {config.out}")

    records: dict[str, FileRecord] = dict(earlier)
    for item, cid in todo:
        records[item.relative] = FileRecord(
            relative=item.relative, source=item.source, status="pending", content=cid, config=fingerprint
        )
    content = {item.relative: cid for item, cid in todo}
    report = BatchReport(
        command=config.command or shlex.join(sys.argv),
        records=[],
        started_utc=started,
        skipped_non_media=len(src.skipped),
        unmatched_references=matched.unmatched,
        settings=_settings(config, fingerprint),
    )
    pending_error: BaseException | None = None
    pool: ServerPool | None = None
    try:
        with contextlib.ExitStack() as stack:
            items = [item for item, _ in todo]
            if items:
                servers = list(config.servers)
                if config.docker:
                    from ..containers import serving_container

                    url = stack.enter_context(
                        serving_container(
                            image=config.image,
                            name=config.docker_name,
                            port=config.docker_port,
                            model=config.model,
                            api_key=config.api_key,
                            gpu=config.gpu,
                            timeout_s=config.docker_timeout_s,
                            on_status=_say,
                        )
                    )
                    servers = [url]
                if servers:
                    if pool_factory is not None:
                        pool = pool_factory(servers)
                    else:
                        from .dispatch import ServerPool

                        pool = ServerPool.connect(servers, api_key=config.api_key, jobs=config.jobs)
                    outcomes = _remote_outcomes(items, config, pool)
                else:
                    outcomes = _local_outcomes(items, config, transcriber)
                from .progress import BatchProgress

                progress = BatchProgress(
                    len(items),
                    total_audio_s=_probe_audio(items),
                    interactive=config.interactive,
                    every_s=config.progress_every_s,
                )
                with progress:
                    for outcome in outcomes:
                        rec = _record(outcome, content[outcome.item.relative], fingerprint, run_id)
                        if outcome.transcript is not None:
                            try:
                                write_outputs(sink, outcome.transcript, outcome.item.relative, config.formats)
                            except UsageError as exc:  # a name that would leave OUT: this input only
                                rec.status, rec.error, rec.error_code = "failed", exc.message, exc.code
                            else:
                                rec.outputs = [output_name(rec.relative, f) for f in config.formats]
                                rec.formats = list(config.formats)
                        records[rec.relative] = rec
                        ledger.add(rec)
                        progress.done(rec)
    except KeyboardInterrupt as exc:
        report.status, pending_error = "interrupted", exc
    except TwiAsrError as exc:
        report.status, report.abort_reason, pending_error = "aborted", exc.message, exc
    finally:
        with contextlib.suppress(Exception):
            ledger.flush()

    for spec in src.missing:
        err = InputNotFoundError(f"{spec}: no such file, folder or matching glob")
        records[spec] = FileRecord(
            relative=spec, source=spec, status="failed", error=err.message, error_code=err.code
        )
    report.records = [records[i.relative] for i in src.items] + [records[s] for s in src.missing]
    report.wall_seconds = time.perf_counter() - t_start
    report.finished_utc = _utc()
    report.scores = score_records(report.records, references)
    report.gates = evaluate_gates(
        report.records, report.scores, max_wer=config.max_wer, max_cer=config.max_cer
    )
    if pool is not None:
        report.served = pool.served()
    if config.report:
        write_file_atomic(config.report, report.to_json())
    if config.junit:
        write_file_atomic(config.junit, report.to_junit())
    if config.report_html:
        from ..report import write_html_report

        write_html_report(report, config.report_html)
    if on_report is not None:
        on_report(report)
    if pending_error is not None:
        raise pending_error
    return report


def _settings(config: BatchConfig, fingerprint: str) -> dict[str, Any]:
    """What the report records about how the run was set up (no secrets)."""
    return {
        "sources": config.sources,
        "out": config.out,
        "formats": list(config.formats),
        "backend": "docker" if config.docker else ("servers" if config.servers else "local"),
        "model": config.model or (None if config.docker or config.servers else DEFAULT_MODEL),
        "engine": config.engine,
        "servers": config.servers,
        "image": config.image if config.docker else None,
        "jobs": config.jobs,
        "batch_size": config.batch_size,
        "options": asdict(config.options),
        "references": config.references,
        "max_wer": config.max_wer,
        "max_cer": config.max_cer,
        "resume": config.resume,
        "config_fingerprint": fingerprint,
    }
