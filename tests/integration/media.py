"""Media the integration tests make with ffmpeg: long silence in Opus, fast.

Shared by the decoder memory tests and the server traffic tests, so both make their
hours-long uploads the same way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def ffmpeg(*args: str | Path) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)


def silence_opus(out: Path, seconds: int) -> Path:
    """Mono Opus silence at 6 kb/s (about 1.3 MB an hour): a 10-minute encode looped by remuxing,
    which takes seconds where encoding the hours directly takes minutes."""
    seed = out.with_name(f"seed-{out.name}")
    ffmpeg(
        "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "600", "-c:a", "libopus", "-b:a", "6k", seed
    )
    ffmpeg("-stream_loop", str(seconds // 600), "-i", seed, "-t", str(seconds), "-c", "copy", out)
    seed.unlink()
    return out
