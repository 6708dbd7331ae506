"""Users, login and access tokens."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from cvat_ray.storage.schemas.common import USERNAME_PATTERN, BasicUser, WriteModel


class UserRead(BaseModel):
    url: str
    id: int
    username: str
    first_name: str
    last_name: str
    email: str
    groups: list[str]
    is_staff: bool
    is_superuser: bool
    is_active: bool
    last_login: datetime | None
    date_joined: datetime
    has_analytics_access: bool


class UserPatch(WriteModel):
    first_name: str | None = Field(default=None, max_length=150)
    last_name: str | None = Field(default=None, max_length=150)
    email: str | None = Field(default=None, max_length=254)
    is_active: bool | None = None
    is_staff: bool | None = None
    is_superuser: bool | None = None
    groups: list[str] | None = None


class LoginRequest(WriteModel):
    username: str | None = Field(default=None, max_length=150)
    email: str | None = Field(default=None, max_length=254)
    password: str = Field(min_length=1, max_length=4096)


class RegisterRequest(WriteModel):
    username: str = Field(min_length=1, max_length=150, pattern=USERNAME_PATTERN)
    email: str = Field(default="", max_length=254)
    password1: str = Field(min_length=1, max_length=4096)
    password2: str = Field(min_length=1, max_length=4096)
    first_name: str = Field(default="", max_length=150)
    last_name: str = Field(default="", max_length=150)


class RegisterResponse(BaseModel):
    username: str
    email: str
    first_name: str
    last_name: str
    email_verification_required: bool = False
    key: str | None = None


class PasswordChangeRequest(WriteModel):
    old_password: str = Field(min_length=1, max_length=4096)
    new_password1: str = Field(min_length=1, max_length=4096)
    new_password2: str = Field(min_length=1, max_length=4096)


class TokenResponse(BaseModel):
    key: str = Field(max_length=40)


class AccessTokenRead(BaseModel):
    id: int
    name: str
    owner: BasicUser
    read_only: bool
    created_date: datetime
    updated_date: datetime
    expiry_date: datetime | None
    last_used_date: datetime | None


class AccessTokenCreated(AccessTokenRead):
    value: str


class AccessTokenWrite(WriteModel):
    name: str = Field(min_length=1, max_length=255)
    expiry_date: datetime | None = None
    read_only: bool = False


class AccessTokenPatch(WriteModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    expiry_date: datetime | None = None
    read_only: bool | None = None
