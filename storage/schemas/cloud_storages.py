"""``/api/cloudstorages`` shapes. Secrets are write-only: no read shape carries them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from cvat_ray.storage.schemas.common import BasicUser, WriteModel

ProviderType = Literal["AWS_S3_BUCKET", "AZURE_CONTAINER", "GOOGLE_CLOUD_STORAGE"]
CredentialsType = Literal[
    "KEY_SECRET_KEY_PAIR",
    "ACCOUNT_NAME_TOKEN_PAIR",
    "KEY_FILE_PATH",
    "ANONYMOUS_ACCESS",
    "CONNECTION_STRING",
]


class CloudStorageRead(BaseModel):
    id: int
    owner: BasicUser | None
    manifests: list[str]
    provider_type: str
    resource: str
    display_name: str
    created_date: datetime
    updated_date: datetime
    credentials_type: str
    specific_attributes: str
    description: str
    organization: int | None


class _Secrets(WriteModel):
    session_token: str | None = Field(default=None, max_length=440)
    account_name: str | None = Field(default=None, max_length=24)
    key: str | None = Field(default=None, max_length=40)
    secret_key: str | None = Field(default=None, max_length=64)
    connection_string: str | None = Field(default=None, max_length=1024)
    # the service account key file (JSON), sent as a multipart file or a JSON string
    key_file: str | None = Field(default=None, max_length=64 * 1024)


class CloudStorageWrite(_Secrets):
    provider_type: ProviderType
    resource: str = Field(min_length=1, max_length=222)
    display_name: str = Field(min_length=1, max_length=63)
    credentials_type: CredentialsType
    specific_attributes: str = Field(default="", max_length=1024)
    description: str = Field(default="", max_length=2048)
    manifests: list[str] = Field(default_factory=list, max_length=100)


class CloudStoragePatch(_Secrets):
    resource: str | None = Field(default=None, min_length=1, max_length=222)
    display_name: str | None = Field(default=None, min_length=1, max_length=63)
    credentials_type: CredentialsType | None = None
    specific_attributes: str | None = Field(default=None, max_length=1024)
    description: str | None = Field(default=None, max_length=2048)
    manifests: list[str] | None = Field(default=None, max_length=100)


class FileInfo(BaseModel):
    name: str
    type: Literal["REG", "DIR"]
    mime_type: str


class CloudStorageContent(BaseModel):
    content: list[FileInfo]
    next: str | None
