"""``twi-asr docker``: build the image, run and watch server containers, scale on swarm, batch through one.

``build``, ``status`` and ``verify`` live in :mod:`.docker_images`.

Everything goes through docker-py (:mod:`twi_asr.containers`), never the
``docker`` binary; every Docker problem is one line and exit code 3.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Annotated, Any

import typer

from ..errors import UsageError
from . import console
from .docker_images import register as _register_image_commands
from .options import key_value_pairs as _pairs

app = typer.Typer(
    help="Build, run, watch and scale the server in Docker (docker-py; the `docker` extra).",
    no_args_is_help=True,
)
_register_image_commands(app)  # build, status, verify (cli/docker_images.py)

# Literal defaults (not imported from containers) keep `import twi_asr.cli` light.
_CPU_IMAGE = "twi-asr:cpu"
_GPU_IMAGE = "twi-asr:cuda"
_NAME = "twi-asr"
_PORT = 8001

GpuOpt = Annotated[bool, typer.Option("--gpu", help="NVIDIA GPUs (Dockerfile.cuda, image twi-asr:cuda).")]
ImageOpt = Annotated[
    str | None,
    typer.Option("--image", "-i", help="Image tag (default twi-asr:cpu, with --gpu twi-asr:cuda)."),
]
NameOpt = Annotated[str, typer.Option("--name", "-n", help="Container (or service) name.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model the server loads (TWI_ASR_MODEL in the container)."),
]
EnvOpt = Annotated[
    list[str] | None, typer.Option("--env", "-e", help="K=V for the container's environment (repeatable).")
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="TWI_ASR_API_KEY",
        help="Require 'Authorization: Bearer KEY'. Reaches the container as a read-only file "
        "(/run/secrets/twi_asr_api_key), never as a plain variable (as do TWI_ASR_API_KEY and "
        "HF_TOKEN in --env).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _print_tail(lines: list[str]) -> None:
    from rich.text import Text

    for line in lines:
        console.stderr.print(Text(f"  | {line}", style="dim"), soft_wrap=True)


# ------------------------------------------------------------------ run
MemoryOpt = Annotated[
    str | None,
    typer.Option("--memory", help="Memory limit, e.g. 4g, 512m [default: 4g].", show_default=False),
]
CpusOpt = Annotated[
    str | None,
    typer.Option(
        "--cpus", help="CPU limit, e.g. 2, 0.5 [default: 2, at most the engine's].", show_default=False
    ),
]


@app.command("run")
def run(
    image: ImageOpt = None,
    gpu: GpuOpt = False,
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="Host port (0 = any free).")
    ] = _PORT,
    model: ModelOpt = None,
    name: NameOpt = _NAME,
    env: EnvOpt = None,
    api_key: ApiKeyOpt = None,
    public: Annotated[
        bool, typer.Option("--public", help="Publish on every interface (0.0.0.0), not just 127.0.0.1.")
    ] = False,
    volume: Annotated[
        list[str] | None,
        typer.Option(
            "--volume", "-v", help="HOST:CONTAINER[:ro] bind mount, e.g. a model folder (repeatable)."
        ),
    ] = None,
    memory: MemoryOpt = None,
    cpus: CpusOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until /ready answers 200.")] = True,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for readiness.")
    ] = 120.0,
) -> None:
    """Start the server in a container; prints its URL once it is ready.

    Least privilege: read-only root, a 512 MB tmpfs /tmp, no capabilities, no-new-privileges, uid
    10001, memory and CPU limits; the volume twi-asr-models on /models (unless --volume mounts
    something there) keeps models downloaded or converted at run time.
    """
    from .. import containers

    volumes: dict[str, str] = {}
    for spec in volume or []:
        host, sep, target = spec.partition(":")
        if not sep or not host or not target.startswith("/"):
            raise UsageError(f"--volume {spec!r}: expected HOST:/container/path[:ro]")
        volumes[host] = target
    image = image or (_GPU_IMAGE if gpu else _CPU_IMAGE)
    container = containers.run_server(
        image,
        name=name,
        port=port,
        model=model,
        env=_pairs(env, "--env"),
        api_key=api_key,
        gpu=gpu,
        volumes=volumes or None,
        bind="0.0.0.0" if public else "127.0.0.1",
        memory=memory,
        cpus=cpus,
    )
    url = containers.container_url(container) or f"http://127.0.0.1:{port}"
    if not wait:
        console.info(f"started {name} from {image}; `twi-asr docker health {name}` says when it is ready")
        console.stdout.out(url)
        return
    with console.stderr.status(f"{name}: waiting for the server to load its model ...", spinner="dots") as s:
        try:
            url = containers.wait_ready(
                container, url, timeout, on_wait=lambda m: s.update(f"{m} (up to {timeout:g} s)")
            )
        except containers.ContainerFailed as exc:
            s.stop()
            if exc.log_tail:
                console.info(f"{name}: {exc.tail_title}")
            _print_tail(exc.log_tail)
            raise containers.ContainerFailed(exc.summary) from exc
    console.info(f"{name} ({image}) is ready")
    console.stdout.out(url)


# ------------------------------------------------------------------ logs
@app.command("logs")
def logs(
    name: Annotated[str, typer.Argument(help="Container (or service) name.")] = _NAME,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[int, typer.Option("--tail", min=0, help="Lines from the end to start with.")] = 100,
) -> None:
    """Print the server's log lines (stdout and stderr of the container)."""
    from .. import containers

    for line in containers.logs(name, follow=follow, tail=tail):
        console.stdout.out(line, highlight=False)


# ------------------------------------------------------------------ stop
@app.command("stop")
def stop(
    name: Annotated[str | None, typer.Argument(help="Container or service name (default twi-asr).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every container and service of ours.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Stop but do not remove the container.")] = False,
    timeout: Annotated[int, typer.Option("--timeout", min=0, help="Seconds for a graceful stop.")] = 10,
) -> None:
    """Stop and remove our container(s); removes our swarm service of that name too."""
    from .. import containers

    if name is not None and all_:
        raise UsageError("pass a NAME or --all, not both")
    done = containers.stop(None if all_ else (name or _NAME), all_managed=all_, keep=keep, timeout=timeout)
    for what in done:
        console.info(f"stopped {what}")
    if not done:
        console.info("nothing to stop: no twi-asr containers or services")


# ------------------------------------------------------------------ health
@app.command("health")
def health(
    target: Annotated[
        str, typer.Argument(help="A server URL (http://...) or a container/service name.")
    ] = _NAME,
    as_json: JsonOpt = False,
) -> None:
    """Is it alive and ready? Exit 0 when ready, 3 when not."""
    from .. import containers
    from ..errors import EnvironmentProblem

    report: dict[str, Any] = containers.health(target)
    if as_json:
        console.stdout.out(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            console.stdout.out(f"{key}: {value}")
    if not report.get("ready"):
        why = report.get("detail") or report.get("ready_status") or report.get("status") or "not ready"
        raise EnvironmentProblem(f"{target} is not ready ({why})")


# ------------------------------------------------------------------ scale
@app.command("scale")
def scale(
    replicas: Annotated[int, typer.Argument(min=0, help="How many server replicas.")],
    image: Annotated[str, typer.Option("--image", "-i", help="Image for a new service.")] = _CPU_IMAGE,
    port: Annotated[
        int | None,
        typer.Option("--port", "-p", min=1, max=65535, help="Published port on the mesh [default: 8001]."),
    ] = None,
    publish_mode: Annotated[
        str,
        typer.Option(
            "--publish-mode",
            help="ingress: one port for all replicas (the routing mesh, needs IPVS); host: a port per "
            "replica; auto: ingress where this kernel has IPVS, else host.",
        ),
    ] = "auto",
    init_swarm: Annotated[
        bool, typer.Option("--init-swarm", help="Make this engine a one-node swarm when it is in none.")
    ] = False,
    update_image: Annotated[
        str | None,
        typer.Option("--update-image", help="Roll the service to this image, one replica at a time."),
    ] = None,
    name: NameOpt = _NAME,
    model: ModelOpt = None,
    env: EnvOpt = None,
    api_key: ApiKeyOpt = None,
    memory: MemoryOpt = None,
    cpus: CpusOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until every replica runs.")] = True,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for the replicas.")
    ] = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """Run N replicas as a Docker Swarm service behind one port; scale or roll it to a new image.

    Prints the service's URL (one per replica in host mode) once every replica answers /ready.
    Each replica runs as `twi-asr docker run`'s container does (--memory and --cpus per replica; the
    key as a Docker secret) except for no-new-privileges, which this engine's API (Docker 20.10, API
    1.41) cannot set on a service.
    """
    from .. import containers

    info = containers.scale(
        replicas,
        image=image,
        port=port,
        publish_mode=publish_mode,
        init_swarm=init_swarm,
        name=name,
        update_image=update_image,
        model=model,
        env=_pairs(env, "--env"),
        api_key=api_key,
        memory=memory,
        cpus=cpus,
    )
    if wait:
        with console.stderr.status(
            f"service {name}: waiting for {replicas} replicas ...", spinner="dots"
        ) as s:
            try:
                started = time.monotonic()
                info = containers.wait_replicas(
                    name,
                    timeout,
                    on_wait=lambda i: s.update(f"service {name}: {i.running}/{i.replicas} replicas running"),
                )
                if replicas > 0:
                    s.update(f"service {name}: waiting for /ready ...")
                    left = max(timeout - (time.monotonic() - started), 10.0)
                    info = containers.wait_service_ready(name, left)
            except containers.ContainerFailed as exc:
                s.stop()
                if exc.log_tail:
                    console.info(f"service {name}: {exc.tail_title}")
                _print_tail(exc.log_tail)
                raise containers.ContainerFailed(exc.summary) from exc
    if as_json:
        console.stdout.out(json.dumps(info.to_dict(), indent=2))
        return
    where = "behind the routing mesh" if info.publish_mode == "ingress" else "each on a port (host mode)"
    console.info(f"service {info.name}: {info.running}/{info.replicas} replicas of {info.image}, {where}")
    for url in info.urls:
        console.stdout.out(url)


# ------------------------------------------------------------------ batch
@app.command("batch", no_args_is_help=True)
def batch(
    inputs: Annotated[
        list[str], typer.Argument(help="Folders (recursive), globs, files, s3:// prefixes or manifests.")
    ],
    out: Annotated[
        str, typer.Option("--output", "--output-dir", "-o", help="Output folder or s3://bucket/prefix.")
    ],
    formats: Annotated[
        str, typer.Option("--format", "-f", help="Comma-separated: txt, json, srt, vtt, tsv, or all.")
    ] = "txt",
    image: ImageOpt = None,
    gpu: GpuOpt = False,
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="Host port (0 = any free).")
    ] = 0,
    model: ModelOpt = None,
    name: NameOpt = _NAME,
    api_key: ApiKeyOpt = None,
    language: Annotated[
        str, typer.Option("--language", "-l", help="auto, a Whisper code, or tw/twi/ak/akan.")
    ] = "auto",
    word_timestamps: Annotated[
        bool, typer.Option("--word-timestamps/--no-word-timestamps", help="Per-word times (json, tsv).")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Requests in flight.")] = 4,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Skip inputs done by an earlier run into the same OUT."),
    ] = True,
    report: Annotated[str | None, typer.Option("--report", help="Write the JSON report here.")] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for readiness.")
    ] = 300.0,
) -> None:
    """Transcribe many inputs through a server container (ours if one runs; else started and stopped here).

    The same run as `twi-asr batch --docker`: resumable, a report, exit 1 when an input failed.
    """
    from ..batch.runner import BatchConfig, run_batch
    from ..languages import resolve_language
    from ..types import TranscribeOptions
    from ..writers import parse_formats
    from .batch import print_report, sigterm_as_interrupt

    fmts = parse_formats(formats)
    resolve_language(language, checkpoint_default=None)  # bad --language: exit 2 before any container
    config = BatchConfig(
        sources=list(inputs),
        out=out,
        formats=fmts,
        options=TranscribeOptions(language=language, word_timestamps=word_timestamps),
        model=model,
        api_key=api_key,
        jobs=jobs,
        docker=True,
        image=image or (_GPU_IMAGE if gpu else _CPU_IMAGE),
        gpu=gpu,
        docker_name=name,
        docker_port=port or None,
        docker_timeout_s=timeout,
        resume=resume,
        report=report,
        command=shlex.join(["twi-asr", "docker", "batch", *inputs]),
    )
    with sigterm_as_interrupt():
        result = run_batch(config, on_report=print_report)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
