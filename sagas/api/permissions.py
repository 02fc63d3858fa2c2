"""Who may call an endpoint: the same model permissions the admin asks for, one per endpoint."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class HasModelPermission(BasePermission):
    """Allows an authenticated user who holds the view's ``required_permission`` ("sagas.retry_sagarun").

    Unauthenticated requests are refused as DRF refuses them (401 with a token challenge, or 403); an
    authenticated user without the permission gets 403 naming the permission to grant.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        permission: str = view.required_permission
        if request.user.has_perm(permission):
            return True
        # DRF reads the message off the instance after a refusal: say which permission to grant.
        self.message = (
            f"User {request.user.get_username()!r} lacks the permission {permission!r}, which this endpoint "
            "requires; grant it to the user or to one of their groups (admin: Users or Groups)."
        )
        return False
