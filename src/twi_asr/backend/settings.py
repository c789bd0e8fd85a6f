"""Backend settings from flags and ``TWI_ASR_*`` environment variables (pydantic-settings).

One object for every default. A container is configured by its environment
alone; ``twi-asr backend serve`` flags override the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..secret_files import secret_from_file

__all__ = ["BackendSettings", "default_data_dir"]


def default_data_dir() -> Path:
    """Where the embedded database and storage live unless told otherwise (XDG data home)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "twi-asr" / "backend"


class BackendSettings(BaseSettings):
    """Everything the backend needs; each field has a ``TWI_ASR_<NAME>`` variable."""

    model_config = SettingsConfigDict(
        env_prefix="TWI_ASR_", extra="ignore", protected_namespaces=(), env_ignore_empty=True
    )

    backend_host: str = "127.0.0.1"
    backend_port: int = Field(8000, ge=1, le=65535)
    asr_url: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["http://127.0.0.1:8001"])
    """Inference servers (8001); several URLs (comma-separated in the variable) fail over."""
    asr_api_key: SecretStr | None = None
    """The key the 8001 servers expect (their ``TWI_ASR_API_KEY``)."""
    asr_api_key_file: Path | None = None
    """A file holding that key (a Docker/Kubernetes secret), read when ``asr_api_key`` is unset."""
    database_url: str | None = None
    """SQLAlchemy URL; unset: SQLite in ``data_dir``. ``postgresql://...`` uses psycopg 3."""
    storage: str | None = None
    """A folder or ``s3://bucket/prefix``; unset: ``data_dir/storage``."""
    s3_public_endpoint_url: str | None = None
    """The S3 endpoint as clients reach it, for presigned upload URLs (default: the backend's own)."""
    data_dir: Path = Field(default_factory=default_data_dir)
    public_url: str | None = None
    """The URL clients reach this backend at (for upload URLs in the local-storage mode)."""

    workers: int = Field(2, ge=0, le=64)
    """Job worker threads in this process (0: this process only serves HTTP)."""
    job_lease_s: float = Field(60.0, gt=0.5)
    """A running job whose worker stops renewing its lease this long is taken by another worker."""
    job_max_attempts: int = Field(5, ge=1)
    """Tries of a job whose worker died mid-job before it is failed (an unreachable ASR does not count)."""
    poll_interval_s: float = Field(1.0, gt=0.0)
    """How often idle workers look for due jobs; a job submitted in this process wakes them at once."""
    asr_timeout_s: float = Field(3600.0, gt=0.0)
    asr_retry_max_s: float = Field(30.0, gt=0.0)
    """Longest wait before a job whose ASR servers were all unreachable is tried again."""

    max_upload_mb: float = Field(1024.0, gt=0.0)
    web_direct_upload_mb: float = Field(16.0, ge=0.0)
    """The web app sends files bigger than this straight to storage (presigned PUT), not in a form."""
    upload_url_ttl_s: int = Field(3600, ge=60)
    max_concurrent_jobs: int = Field(8, ge=1)
    """Per user, queued plus running (a user's own limit overrides it)."""
    audio_minutes_per_day: float = Field(24 * 60.0, gt=0.0)
    """Per user, audio submitted per UTC day (a user's own limit overrides it)."""
    allow_s3_uris: bool = True
    """Whether jobs may name an ``s3_uri`` the backend's credentials can read."""

    webhook_timeout_s: float = Field(10.0, gt=0.0)
    webhook_max_attempts: int = Field(8, ge=1)
    secret_key: SecretStr | None = None
    """Signs local upload URLs; unset: a random key kept in ``data_dir`` (set it for several hosts)."""
    secret_key_file: Path | None = None
    """A file holding ``secret_key`` (a Docker/Kubernetes secret)."""
    session_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    cookie_secure: bool | None = None
    """Secure cookies: unset means "when the request came over TLS" (or X-Forwarded-Proto: https)."""
    log_level: str = "info"

    @model_validator(mode="after")
    def _secrets_from_files(self) -> BackendSettings:
        """``TWI_ASR_ASR_API_KEY_FILE`` / ``TWI_ASR_SECRET_KEY_FILE`` fill the keys left unset."""
        if self.asr_api_key is None:
            value = secret_from_file(self.asr_api_key_file, "TWI_ASR_ASR_API_KEY_FILE")
            self.asr_api_key = SecretStr(value) if value is not None else None
        if self.secret_key is None:
            value = secret_from_file(self.secret_key_file, "TWI_ASR_SECRET_KEY_FILE")
            self.secret_key = SecretStr(value) if value is not None else None
        return self

    @field_validator("asr_url", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
        if isinstance(value, (list, tuple)):
            return [str(u).strip().rstrip("/") for u in value if str(u).strip()]
        return value

    def resolved_database_url(self) -> str:
        """The database URL, SQLite in ``data_dir`` by default; ``postgresql://`` means psycopg 3."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'backend.db'}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    def resolved_storage(self) -> str:
        """The storage location: a folder path or ``s3://bucket/prefix``."""
        return self.storage or str(self.data_dir / "storage")
