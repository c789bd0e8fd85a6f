"""``twi-asr docker build | status | verify``: images that say where they came from, and checks of that.

``build`` stamps the labels and bakes the model (:mod:`twi_asr.containers.stamping`);
``status`` shows each container's and replica's build, from its image's labels
and its live /health; ``verify`` checks an image's packages against its lock
and its labels (exit 1 on drift). Registered on ``twi-asr docker``'s app by
:func:`register`, so the command names are ``twi-asr docker build`` etc.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import console

if TYPE_CHECKING:
    from ..containers.builds import Provenance

_CPU_IMAGE = "twi-asr:cpu"
_GPU_IMAGE = "twi-asr:cuda"

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


# ------------------------------------------------------------------ build
def build(
    gpu: Annotated[
        bool, typer.Option("--gpu", help="NVIDIA GPUs (Dockerfile.cuda, image twi-asr:cuda).")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Bake a model in: an alias or hub id (build arg MODEL), or a local folder (a transformers "
            "or CTranslate2 checkpoint, sent in the build context). With HF_TOKEN set, hub models are "
            "downloaded here, so the token never enters the build.",
        ),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option("--tag", "-t", help="Image tag (default twi-asr:cpu, with --gpu twi-asr:cuda)."),
    ] = None,
    base_image: Annotated[
        str | None, typer.Option("--base-image", help="Base image (build arg BASE_IMAGE).")
    ] = None,
    context: Annotated[Path, typer.Option("--context", help="Build context: the repository root.")] = Path(
        "."
    ),
    dockerfile: Annotated[
        str | None,
        typer.Option(
            "--file", "-f", help="Dockerfile in the context (default Dockerfile, --gpu Dockerfile.cuda)."
        ),
    ] = None,
    build_arg: Annotated[
        list[str] | None, typer.Option("--build-arg", help="KEY=VALUE build argument (repeatable).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            envvar="TWI_ASR_SOURCE_URL",
            help="The source label (org.opencontainers.image.source) [default: the git remote 'origin', "
            "else the PyPI project page].",
        ),
    ] = None,
    pull: Annotated[bool, typer.Option("--pull", help="Always pull a newer base image.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild every step.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream the build output.")] = False,
) -> None:
    """Build the server image with its provenance labels, streaming the build output; prints the image id."""
    from rich.text import Text

    from .. import containers
    from ..containers import labels as L
    from ..containers.stamping import build_server_image
    from .options import key_value_pairs as _pairs

    tag = tag or (_GPU_IMAGE if gpu else _CPU_IMAGE)
    dockerfile = dockerfile or ("Dockerfile.cuda" if gpu else "Dockerfile")
    args = _pairs(build_arg, "--build-arg")
    if base_image:
        args["BASE_IMAGE"] = base_image
    console.info(f"building {tag} from {context / dockerfile} ...")
    status = None

    def on_line(line: str) -> None:
        step = line.startswith("Step ")
        if status is not None and step:
            status.update(f"building {tag}: {line[:100]}")
        console.stderr.print(Text(line, style="bold" if step else "dim"), soft_wrap=True)

    try:
        with contextlib.ExitStack() as stack:
            if not quiet:
                status = stack.enter_context(console.stderr.status(f"building {tag} ...", spinner="dots"))
            result = build_server_image(
                context,
                tag=tag,
                dockerfile=dockerfile,
                build_args=args,
                model=model,
                source=source,
                on_line=None if quiet else on_line,
                on_note=lambda m: console.info(f"note: {m}"),
                pull=pull,
                no_cache=no_cache,
            )
    except containers.ImageBuildError as exc:
        if quiet:
            raise
        raise containers.ImageBuildError(exc.summary, step=exc.step) from exc  # its lines are on screen
    got = result.labels
    console.info(
        f"built {tag}: revision {L.short(got.get(L.REVISION))}, version {got.get(L.VERSION)}, "
        f"lock {L.short(got.get(L.LOCK_SHA256))}, weights {got.get(L.WEIGHTS_HASH)}"
    )
    console.stdout.out(result.image_id)


# ------------------------------------------------------------------ status
def _shown(field: str, value: str | None) -> str:
    from ..containers.labels import short

    return (value or "-") if field in ("version", "created", "weights_hash") else short(value)


def _build_table(rows: list[Provenance]) -> Any:
    """One row per container or replica: its image's labels, then what its live /health says."""
    from rich.markup import escape
    from rich.table import Table

    from ..containers.builds import FIELDS

    shown = [f for f in FIELDS if f != "source"]
    table = Table(title="builds: image labels (and the live /health where it differs)")
    table.add_column("container", overflow="fold")
    for name in shown:
        table.add_column(name.replace("_sha256", "").replace("_", " "), overflow="fold")
    table.add_column("live /health", overflow="fold")
    for p in rows:
        who = f"{p.name} ({p.service})" if p.service else p.name
        cells = [_shown(f, p.labels.get(f)) for f in shown]
        if p.live is None:
            live = "no answer"
        elif p.mismatches:
            diffs = "; ".join(f"{f} {_shown(f, p.live.get(f))}" for f in p.mismatches)
            live = f"[red]MISMATCH: {escape(diffs)}[/red]"
        else:
            live = "agrees"
        table.add_row(escape(who), *(escape(c) for c in cells), live)
    return table


def status(as_json: JsonOpt = False) -> None:
    """Our containers and swarm services: state, health, ports, image, replicas, and each one's build."""
    from .. import containers
    from ..containers.builds import container_builds, replica_builds

    found = containers.list_managed()
    services = containers.list_services()
    builds = container_builds() if found else {}
    replicas = {s.name: replica_builds(s.name) for s in services}
    if as_json:
        body = {
            "containers": [
                {**c.to_dict(), "build": builds[c.name].to_dict() if c.name in builds else None}
                for c in found
            ],
            "services": [
                {**s.to_dict(), "replica_builds": [r.to_dict() for r in replicas[s.name]]} for s in services
            ],
        }
        console.stdout.out(json.dumps(body, indent=2))
        return
    if not found and not services:
        console.info("no twi-asr containers or services (start one: `twi-asr docker run`)")
        return
    from rich.table import Table

    if found:
        table = Table(title="twi-asr containers")
        for col in ("name", "status", "health", "url", "image", "id"):
            table.add_column(col, overflow="fold", no_wrap=col in ("name", "url"))
        for c in found:
            table.add_row(c.name, c.status, c.health, c.url or "-", c.image, c.id)
        console.stdout.print(table)
    if services:
        table = Table(title="twi-asr swarm services")
        for col in ("name", "replicas (running/wanted)", "publish", "url", "image", "update", "errors"):
            table.add_column(col, overflow="fold", no_wrap=col in ("name", "url"))
        for s in services:
            table.add_row(
                s.name,
                f"{s.running}/{s.replicas}",
                s.publish_mode,
                "\n".join(s.urls) or "-",
                s.image,
                s.update_state or "-",
                "; ".join(s.errors) or "-",
            )
        console.stdout.print(table)
    rows = [builds[c.name] for c in found if c.name in builds]
    rows += [r for s in services for r in replicas[s.name]]
    if rows:
        console.stdout.print(_build_table(rows))


# ------------------------------------------------------------------ verify
def verify(
    image: Annotated[str, typer.Argument(help="Image tag or id.")] = _CPU_IMAGE,
    lock: Annotated[
        Path | None, typer.Option("--lock", help="The lock it must be built from (e.g. locks/cpu.txt).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an image: labels complete, installed packages = its lock, lock = its label. Exit 1 on drift."""
    from ..containers.verify import verify_image

    report = verify_image(image, lock=lock)
    if as_json:
        console.stdout.out(json.dumps(report.to_dict(), indent=2))
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"docker verify {image} ({report.image_id[:19]})")
        table.add_column("check", no_wrap=True)
        table.add_column("")
        table.add_column("detail", overflow="fold")
        for c in report.checks:
            mark = "[green]ok[/green]" if c.ok else "[red]DRIFT[/red]"
            table.add_row(escape(c.name), mark, escape(c.detail))
        console.stdout.print(table)
        for line in report.drift.lines():
            console.stdout.out(line, highlight=False)
    if not report.ok:
        bad = [c.name for c in report.checks if not c.ok]
        console.error(f"{image} drifts from its labels or lock: {', '.join(bad)}")
        raise typer.Exit(1)
    console.info(f"{image}: labels complete, packages = its lock, lock = its label")


def register(app: typer.Typer) -> None:
    """Add ``build``, ``status`` and ``verify`` to ``twi-asr docker``."""
    app.command("build")(build)
    app.command("status")(status)
    app.command("verify")(verify)
