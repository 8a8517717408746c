"""`facerep serve`: the face tools as an HTTP API (FastAPI on uvicorn).

`create_app(ServiceSettings(...))` builds the app; `serve(settings, host, port)` runs it. The
endpoints are listed in `facerep.service.routes`, the error codes in `facerep.service.errors`.
"""

from facerep.service.settings import ServiceSettings

# Loaded on first use: the CLI reads ServiceSettings' defaults without importing FastAPI.
_LAZY = {"create_app": "facerep.service.app", "serve": "facerep.service.app"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facerep.service' has no attribute {name!r}")


__all__ = ["ServiceSettings", "create_app", "serve"]
