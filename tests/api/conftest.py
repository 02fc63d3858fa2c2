"""Users with exactly the saga run permissions a test gives them, and API clients that log in as them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

MakeUser = Callable[..., User]
TokenClient = Callable[..., APIClient]


@pytest.fixture
def make_user(db: None) -> MakeUser:
    """A user holding the given permissions ("view", "add", "retry", ...: the sagarun model's codenames)."""
    count = 0

    def make(*actions: str, username: str = "", superuser: bool = False, **fields: Any) -> User:
        nonlocal count
        count += 1
        name = username or f"user{count}"
        if superuser:
            return User.objects.create_superuser(name, f"{name}@example.com", "pw", **fields)
        user = User.objects.create_user(name, f"{name}@example.com", "pw", **fields)
        codenames = [f"{action}_sagarun" for action in actions]
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="sagas", codename__in=codenames))
        return user

    return make


@pytest.fixture
def token_client() -> TokenClient:
    """An API client that sends the user's token (``Authorization: Token <key>``), as a script would."""

    def client(user: User) -> APIClient:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
        return api

    return client


@pytest.fixture
def api_as(make_user: MakeUser, token_client: TokenClient) -> Callable[..., APIClient]:
    """A token client for a new user with the given permissions: ``api_as("view", "retry")``."""

    def client(*actions: str, **user_fields: Any) -> APIClient:
        return token_client(make_user(*actions, **user_fields))

    return client
