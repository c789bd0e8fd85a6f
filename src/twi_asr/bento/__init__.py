"""twi-asr as a BentoML service: the opt-in ``twi-asr[bentoml]`` serving path over the same engine.

``bentoml serve twi_asr.bento:TwiAsr`` (or ``twi-asr bento serve``). ``TwiAsr`` is imported on
first use (PEP 562), so ``twi_asr.bento.bentofile`` and ``twi_asr.bento.wire`` work without
BentoML, and nothing outside this package imports it: ``import twi_asr`` and ``twi-asr --help``
stay as fast without the extra.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BentoSettings", "TwiAsr"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
