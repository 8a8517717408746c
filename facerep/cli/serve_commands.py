"""`facerep serve`: the HTTP API over embed, verify and galleries (see facerep.service)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from facerep.cli.output import user_errors
from facerep.service.settings import MEGABYTE, ServiceSettings, read_token

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
# The flags' defaults are ServiceSettings' own (a dataclass keeps each default as a class
# attribute): one source of truth for the CLI and Python callers.
DEFAULT_UPLOAD_MB = ServiceSettings.max_upload_bytes / MEGABYTE


def serve(
    gallery_dir: Annotated[
        Path,
        typer.Option(help="Folder of galleries: gallery NAME lives in GALLERY_DIR/NAME."),
    ],
    encoder: Annotated[
        str, typer.Option("--encoder", "-e", help="dlib, a run folder or a .onnx.")
    ] = ServiceSettings.encoder,
    occlusion: Annotated[
        Path | None,
        typer.Option(
            help="Run whose autoencoder and occlusion prior answer POST /v1/occlusion "
            "[default: the encoder's run, when it has both].",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    token_file: Annotated[
        Path | None,
        typer.Option(help="File holding the write token (else $FACEREP_TOKEN)."),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Refuse adds and deletes (403); no token needed.")
    ] = False,
    insecure_local: Annotated[
        bool,
        typer.Option(
            "--insecure-local", help="Allow writes without a token; loopback --host only."
        ),
    ] = False,
    max_upload_mb: Annotated[
        float,
        typer.Option(
            help="Largest request body in MB (1 MB = 2^20 bytes); larger: 413.", min=0.001
        ),
    ] = DEFAULT_UPLOAD_MB,
    max_pixels: Annotated[
        int,
        typer.Option(help="Larger images are refused undecoded (decompression bombs).", min=1),
    ] = ServiceSettings.max_pixels,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Allow browser calls from this origin (repeatable); default: none."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Crops per encoder pass across requests (1: no batching).", min=1)
    ] = ServiceSettings.batch_size,
    batch_wait_ms: Annotated[
        float, typer.Option(help="How long a lone request waits for others to batch with.", min=0)
    ] = ServiceSettings.batch_wait_ms,
    detect_workers: Annotated[
        int, typer.Option(help="Photos decoded and searched for faces at once.", min=1)
    ] = ServiceSettings.detect_workers,
    detect_processes: Annotated[
        bool,
        typer.Option(
            "--detect-processes/--detect-threads",
            help="Detect (and embed, with dlib) in worker processes, on every core; or threads.",
        ),
    ] = ServiceSettings.detect_processes,
    max_in_flight: Annotated[
        int,
        typer.Option(help="Adds, deletes and face requests handled at once; more: 503.", min=1),
    ] = ServiceSettings.max_in_flight,
    header_timeout: Annotated[
        float,
        typer.Option(help="Seconds a client has to send a request's headers; then 408.", min=0.1),
    ] = ServiceSettings.header_timeout,
    body_timeout: Annotated[
        float,
        typer.Option(help="Seconds a request's whole body has to arrive; then 408.", min=0.1),
    ] = ServiceSettings.body_timeout,
    max_client_connections: Annotated[
        int,
        typer.Option(help="Open connections per client address; more are closed (0: any).", min=0),
    ] = ServiceSettings.max_client_connections,
    log_level: Annotated[LogLevel, typer.Option(help="Server log detail.")] = "info",
) -> None:
    """Serve embed, verify and gallery add/remove/search over HTTP (docs at /docs).

    Adding and removing faces needs a bearer token, from $FACEREP_TOKEN or --token-file; the
    server refuses to start with writes enabled and no token, unless it is bound to loopback
    with --insecure-local. --read-only turns writes off.
    """
    from facerep.service import serve as serve_api

    with user_errors():
        settings = ServiceSettings(
            gallery_dir=gallery_dir,
            encoder=encoder,
            occlusion=occlusion,
            token=read_token(token_file),
            read_only=read_only,
            insecure_local=insecure_local,
            max_upload_bytes=round(max_upload_mb * MEGABYTE),  # at least 1049: min=0.001
            max_pixels=max_pixels,
            cors_origins=tuple(cors_origin or ()),
            batch_size=batch_size,
            batch_wait_ms=batch_wait_ms,
            detect_workers=detect_workers,
            detect_processes=detect_processes,
            max_in_flight=max_in_flight,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_client_connections=max_client_connections,
        )
        serve_api(settings, host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    """Add `facerep serve` to the CLI."""
    app.command()(serve)
