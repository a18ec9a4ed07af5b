"""The REST API under /api/v1, its OpenAPI document and interactive docs."""

from serenchat.api.routes import ApiRoutes

__all__ = ["ApiRoutes"]
