"""ASGI entry point for servers: `uvicorn --factory bff.asgi:app_factory`."""

from __future__ import annotations

from litestar import Litestar

from bff.app import create_app
from bff.platform.settings import load_settings


def app_factory() -> Litestar:
    return create_app(load_settings())
