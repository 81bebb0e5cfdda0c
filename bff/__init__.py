"""Sanxiang BFF: the backend-for-frontend of the province's government-services apps."""

from bff.app import create_app

__all__ = ["create_app"]
