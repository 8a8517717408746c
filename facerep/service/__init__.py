"""`facerep serve`: the face tools as an HTTP API (FastAPI on uvicorn).

`create_app(ServiceSettings(...))` builds the app; `serve(settings, host, port)` runs it. The
endpoints are listed in `facerep.service.routes`, the error codes in `facerep.service.errors`.
"""

from facerep.service.app import create_app, serve
from facerep.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app", "serve"]
