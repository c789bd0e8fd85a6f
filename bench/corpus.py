"""The engines benchmark's inputs: 60 short espeak-ng clips with known text, and one 5-minute file.

Why 60. A 20-clip folder holds about 180 words, so one word is 0.6 points of WER and two rows
that differ by a word look different; the issue asks for WER "no worse than the peer's" on
60 clips (about 540 words, one word is about 0.2 points). The first 20 sentences are
``transcribe_folder.SENTENCES`` (the folder other benches use, left as it is in
``bench/.cache/clips``); the 40 added here are plain, varied English with no numbers, no
names with unusual spellings and no words with British/American spelling variants, so that a
mismatch is a recognition error and not a spelling convention. Most clips use espeak-ng's
``en-us`` voice; every fifth added sentence is read by ``en-gb`` so the set is not one voice only.

The long file is those 60 clips in order, again and again, 0.7 s of silence apart, until it
reaches 5 minutes; its reference text is the sentences in the same order.
Everything is cached under ``bench/.cache`` with a manifest, rebuilt when the recipe changes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from transcribe_folder import MAX_CLIP_S, MIN_CLIP_S, SENTENCES, _wav_seconds, speak

LONG_TARGET_S = 300.0
LONG_PAUSE_S = 0.7

ADDED_SENTENCES = [
    "The old bridge was closed for repairs last winter.",
    "Could you open the window and let some fresh air in?",
    "He forgot his umbrella and got wet on the way home.",
    "The nurse checked on every patient before lunch.",
    "The new house at the end of the street has a red door.",
    "A cold wind blew across the empty beach.",
    "The students listened carefully while the teacher explained the lesson.",
    "Please put the dishes away after dinner.",
    "The baker wakes up early to make bread for the village.",
    "My sister is learning to play the piano.",
    "The bus was late again because of the heavy traffic.",
    "They planted flowers along the path to the garden.",
    "A young boy found a small bird with a broken wing.",
    "The museum was full of visitors during the holiday.",
    "Water boils faster when you cover the pot.",
    "The pilot told the passengers to fasten their seat belts.",
    "She keeps her keys in a blue box by the door.",
    "The shop on the corner sells newspapers and sweets.",
    "We watched the sun go down behind the mountains.",
    "The engineer fixed the broken pump in less than an hour.",
    "Heavy rain flooded the roads near the coast.",
    "The cat slept on the warm roof all afternoon.",
    "He reads a chapter of his book every night before bed.",
    "The village held a big festival after the harvest.",
    "Fresh fruit is cheaper at the market than in the shop.",
    "The manager asked everyone to arrive on time tomorrow.",
    "A loud noise woke the whole family in the middle of the night.",
    "The fisherman mended his nets on the sand.",
    "Our grandparents tell wonderful stories about their childhood.",
    "The new hospital will open next spring.",
    "Keep the milk in the fridge so it stays cold.",
    "The runners trained hard for the big race.",
    "Please write your name at the top of the page.",
    "The radio played old songs while we cooked.",
    "The goats wandered into the field and ate the grass.",
    "Clean hands help stop the spread of disease.",
    "The wooden chair creaked when he sat down.",
    "The driver stopped to ask for directions to the station.",
    "Bright stars filled the sky above the quiet town.",
    "The crowd cheered when the winners were announced.",
]
SENTENCES_60 = SENTENCES + ADDED_SENTENCES
VOICES_60 = ["en-us"] * len(SENTENCES) + [
    "en-gb" if i % 5 == 4 else "en-us" for i in range(len(ADDED_SENTENCES))
]
assert len(set(SENTENCES_60)) == 60, "the 60 sentences must be distinct"


@dataclass(frozen=True)
class Item:
    """One input file and the text it says."""

    path: Path
    text: str
    seconds: float


@dataclass(frozen=True)
class InputSet:
    """A named set of inputs in one folder (the CLI takes the folder, the child scripts a list)."""

    name: str
    folder: Path
    items: list[Item]

    @property
    def audio_s(self) -> float:
        """Total audio seconds."""
        return sum(i.seconds for i in self.items)


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def _needs_tools() -> None:
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH: install it to build the benchmark inputs")


def build_clips60(folder: Path, *, rebuild: bool = False) -> InputSet:
    """The 60 short clips (``clipNN.wav``, 16 kHz mono) and their text; every clip is 2-6 s."""
    manifest = folder / "manifest.json"
    key = {"sentences": SENTENCES_60, "voices": VOICES_60}
    if rebuild or not manifest.is_file() or json.loads(manifest.read_text()).get("key") != key:
        _needs_tools()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i, (text, voice) in enumerate(zip(SENTENCES_60, VOICES_60, strict=True)):
            speak(text, folder / f"clip{i:02d}.wav", voice=voice)
        manifest.write_text(json.dumps({"key": key}, indent=2) + "\n")
    items = [Item(folder / f"clip{i:02d}.wav", t, _wav_seconds(folder / f"clip{i:02d}.wav"))
             for i, t in enumerate(SENTENCES_60)]  # fmt: skip
    bad = [f"{c.path.name}: {c.seconds:.2f} s" for c in items if not MIN_CLIP_S <= c.seconds <= MAX_CLIP_S]
    if bad:
        raise SystemExit(f"clips outside {MIN_CLIP_S}-{MAX_CLIP_S} s: {', '.join(bad)}")
    return InputSet("short", folder, items)


def build_long(folder: Path, clips: InputSet, *, rebuild: bool = False) -> InputSet:
    """About 5 minutes of speech: the short clips in order, again and again, 0.7 s apart."""
    out = folder / "long.wav"
    manifest = folder / "manifest.json"
    key = {"sentences": [i.text for i in clips.items], "target_s": LONG_TARGET_S, "pause_s": LONG_PAUSE_S,
           "voices": VOICES_60}  # fmt: skip
    if rebuild or not manifest.is_file() or json.loads(manifest.read_text()).get("key") != key:
        shutil.rmtree(folder, ignore_errors=True)
        parts = folder / "parts"
        parts.mkdir(parents=True)
        pause = parts / "pause.wav"
        _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", str(LONG_PAUSE_S), "-c:a", "pcm_s16le",
                str(pause))  # fmt: skip
        lines, texts, total = [], [], 0.0
        while total < LONG_TARGET_S:
            for item in clips.items:
                lines += [f"file '{item.path}'", f"file '{pause}'"]
                texts.append(item.text)
                total += item.seconds + LONG_PAUSE_S
                if total >= LONG_TARGET_S:
                    break
        listing = parts / "list.txt"
        listing.write_text("\n".join(lines) + "\n")
        _ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c:a", "pcm_s16le", str(out))
        shutil.rmtree(parts)
        manifest.write_text(json.dumps({"key": key, "text": " ".join(texts)}, indent=2) + "\n")
    text = json.loads(manifest.read_text())["text"]
    return InputSet("long", folder, [Item(out, text, _wav_seconds(out))])


def build_inputs(cache: Path, *, rebuild: bool = False) -> dict[str, InputSet]:
    """``short`` (the 60 clips, ``cache/clips60``) and ``long`` (the 5-minute file, ``cache/long60``)."""
    cache = cache.resolve()  # ffmpeg's concat list resolves its paths against the list's folder
    short = build_clips60(cache / "clips60", rebuild=rebuild)
    return {"short": short, "long": build_long(cache / "long60", short, rebuild=rebuild)}


if __name__ == "__main__":  # build (or check) the cached inputs and print their lengths
    from _common import REPO_ROOT

    sets = build_inputs(REPO_ROOT / "bench" / ".cache")
    for s in sets.values():
        secs = [i.seconds for i in s.items]
        print(f"{s.name}: {len(secs)} file(s), {sum(secs):.1f} s (min {min(secs):.2f}, max {max(secs):.2f})")
