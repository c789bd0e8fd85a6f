"""The HTTP inference server (``twi-asr serve``): audio in, text out, on port 8001.

Routes only parse input and shape output (:mod:`.app`); the engine sits behind
the batcher (:mod:`.batching`), which gathers concurrent requests into engine
batches on one worker thread. Nothing here imports torch: the engine is
loaded through :func:`twi_asr.engines.load_transcriber`.
"""

from __future__ import annotations

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServerSettings":
        from .settings import ServerSettings

        return ServerSettings
    raise AttributeError(name)
