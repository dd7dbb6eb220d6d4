"""The HTTP application: the native routes, the TES routes, the metrics and the dashboard
(:mod:`acjob.server.ui`), behind the
guard (:mod:`acjob.server.guard`), every error as JSON (:mod:`acjob.server.errors`).
"""

from __future__ import annotations

from fastapi import FastAPI

from ..version import __version__
from .errors import install_error_handlers
from .guard import Guard
from .metrics import install_metrics
from .metrics import router as metrics_router
from .native import router
from .services import Services
from .tes import router as tes_router
from .ui import install_ui


def create_app(services: Services) -> FastAPI:
    """Build the application over ``services``."""
    app = FastAPI(
        title="acjob",
        version=__version__,
        description="Run long jobs and get their output back: the native acjob API, "
                    "and GA4GH TES v1.1 under /ga4gh/tes/v1.",
    )
    app.state.services = services
    app.state.metrics = install_metrics(services)
    app.include_router(router)
    app.include_router(tes_router)
    app.include_router(metrics_router)
    install_ui(app)
    install_error_handlers(app)
    app.add_middleware(Guard, services=services)
    return app
