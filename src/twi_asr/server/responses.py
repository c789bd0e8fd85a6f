"""Shape a finished transcript into the response format the client asked for.

``json`` and ``verbose_json`` follow OpenAI's bodies (with ``usage``; ``logprobs`` on json
when ``include[]=logprobs`` asked for them); ``text``, ``srt`` and ``vtt`` are the writers'
output, UTF-8. Streamed answers are built in :mod:`.streaming`.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..types import Transcript
from .schemas import ResponseFormat, TranscriptionJSON, logprobs_of, usage_of, verbose_from_transcript


def shape(
    result: Transcript,
    response_format: ResponseFormat,
    *,
    task: str,
    words: bool,
    logprobs: bool = False,
    warnings: tuple[str, ...] = (),
) -> Response:
    """The HTTP response for ``result`` in ``response_format``."""
    from ..writers import render

    if response_format == "json":
        body = TranscriptionJSON(
            text=result.text, usage=usage_of(result), logprobs=logprobs_of(result) if logprobs else None
        )
        return JSONResponse(body.model_dump(exclude_none=True))
    if response_format == "verbose_json":
        verbose = verbose_from_transcript(result, task=task, words=words, warnings=warnings)
        return JSONResponse(verbose.model_dump(exclude_none=True))
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    media = "text/vtt; charset=utf-8" if response_format == "vtt" else "text/plain; charset=utf-8"
    return Response(render(result, response_format), media_type=media)
