"""Settings, read once from SHIPYARD_* environment variables (and a .env file) and passed down.

This is the only module that reads the environment; everything else takes settings as
constructor arguments.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHIPYARD_", env_file=".env", frozen=True, extra="ignore"
    )

    home: Path = Field(
        default=Path("~/.shipyard"), description="Where the embedded registry lives."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the registry database; default SQLite in HOME.",
    )
    blob_url: str | None = Field(
        default=None,
        description="Artifact store: a directory or an fsspec URL; default HOME/blobs.",
    )
    database_timeout_s: float = Field(
        default=30.0, gt=0, description="Lock wait / connect timeout."
    )
    actor: str | None = Field(
        default=None, description="Who changes are recorded as; default the OS user."
    )

    @field_validator("home")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'shipyard.db'}"

    @property
    def resolved_blob_location(self) -> str | Path:
        return self.blob_url or self.home / "blobs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"
