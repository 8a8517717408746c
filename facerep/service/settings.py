"""How a `facerep serve` instance is configured, and the checks that refuse unsafe settings."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from facerep.encoders.registry import EncoderLike
from facerep.images import DEFAULT_MAX_PIXELS

TOKEN_ENV = "FACEREP_TOKEN"
MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class ServiceSettings:
    """Everything `create_app` needs; the CLI builds it from flags, Python callers directly."""

    # Galleries live at gallery_dir/<name>; a name never becomes any other path.
    gallery_dir: Path
    # A name (dlib, pca, pixels), a run folder or an Encoder: loaded once, at startup.
    encoder: EncoderLike = "dlib"
    # The run whose autoencoder and occlusion prior answer POST /v1/occlusion; None: the
    # encoder's run when it has both, else that endpoint answers 409.
    occlusion: Path | None = None
    # Bearer token for the write endpoints (add, delete); None only when writes are off or
    # `insecure_local` is set.
    token: str | None = None
    # No writes at all: add and delete answer 403.
    read_only: bool = False
    # Allow writes without a token; `serve` accepts it on a loopback address only.
    insecure_local: bool = False
    # Larger request bodies get 413 before they are read in full; verify's two photos share it.
    max_upload_bytes: int = 10 * MEGABYTE
    # Larger images are refused before decoding (decompression bombs): 40 MP holds any photo.
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Browser origins allowed to call the API; empty means CORS stays off.
    cors_origins: tuple[str, ...] = ()
    # Crops per encoder call: concurrent requests share one forward pass (1 turns batching off).
    batch_size: int = 8
    # How long a lone request waits for company before its crops go to the encoder alone.
    batch_wait_ms: float = 2.0
    # Photos decoded and searched for faces at once (each worker holds one decoded photo in
    # memory and has its own dlib models).
    detect_workers: int = 2
    # Run those workers as processes, side by side on every core (dlib holds the GIL, so
    # threads take turns), embedding there too with an encoder that holds the GIL (dlib);
    # False: threads of the server, which start at once and share its memory.
    detect_processes: bool = True
    # Requests that do work (POST, DELETE) handled at once; more are answered 503 `overloaded`.
    # A request counts only once its whole body has arrived, so slow uploads never hold a place.
    max_in_flight: int = 64
    # Seconds a client has to send a request's head (request line and headers), from the
    # connection's first byte or its opening; else 408 and the connection is closed.
    header_timeout: float = 10.0
    # Seconds a request's whole body has to arrive, from its headers; else 408 and closed.
    # 60 s lets the largest upload (10 MB) through at 170 KB/s, a slow mobile uplink.
    body_timeout: float = 60.0
    # Connections one client address may hold open at once; more are closed as they open, so
    # one address cannot take every socket. Behind a reverse proxy every client has the proxy's
    # address: raise it there, or turn it off with 0.
    max_client_connections: int = 64


def check_settings(settings: ServiceSettings) -> None:
    """Raise ValueError (one line) for settings the service must not start with."""
    if settings.max_upload_bytes < 1 or settings.max_pixels < 1:
        raise ValueError("the upload and pixel limits must be positive")
    if settings.batch_size < 1 or settings.batch_wait_ms < 0 or settings.detect_workers < 1:
        raise ValueError("batch size and detect workers must be at least 1, the wait at least 0")
    if settings.max_in_flight < 1:
        raise ValueError("the limit of requests in flight must be at least 1")
    if not (settings.header_timeout > 0 and settings.body_timeout > 0):
        raise ValueError("the header and body timeouts must be positive")
    if settings.max_client_connections < 0:
        raise ValueError("the limit of connections per client must be at least 0 (0: none)")
    if settings.token is not None and not settings.token.strip():
        raise ValueError("the token is empty")
    if not settings.read_only and settings.token is None and not settings.insecure_local:
        raise ValueError(
            f"writes are enabled but no token is set: set {TOKEN_ENV} or pass --token-file, "
            "or pass --read-only (or --insecure-local on a loopback --host)"
        )
    folder = Path(settings.gallery_dir)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (--gallery-dir holds one folder per gallery)")
    if settings.read_only and not folder.is_dir():
        raise ValueError(f"{folder}: no such folder (--read-only creates nothing)")


def make_gallery_dir(settings: ServiceSettings) -> None:
    """Create the gallery folder (unless read-only), or raise ValueError (one line) why not."""
    if settings.read_only:
        return
    try:
        Path(settings.gallery_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"{settings.gallery_dir}: cannot create the gallery folder ({e.strerror})"
        ) from None


def check_host(settings: ServiceSettings, host: str) -> None:
    """Refuse unauthenticated writes on any address other than loopback."""
    unauthenticated = settings.token is None and not settings.read_only
    if settings.insecure_local and unauthenticated and not is_loopback(host):
        raise ValueError(
            f"--insecure-local serves writes without a token, so only on a loopback "
            f"--host (127.0.0.1, ::1 or localhost), not {host}"
        )


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def read_token(token_file: Path | None) -> str | None:
    """The write token: `token_file`'s text if given, else $FACEREP_TOKEN, else None.

    Surrounding whitespace (a trailing newline) is not part of the token.

    Raises:
        ValueError: the file cannot be read or is empty.
    """
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{token_file}: cannot read the token file ({e})") from None
        token = text.strip()
        if not token:
            raise ValueError(f"{token_file}: the token file is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None
