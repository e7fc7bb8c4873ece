"""Settings from one place: environment variables prefixed GUNMATCH_ (or a .env file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from matcher.threatmap import ZOOM_RANGE, views_per_zoom
from screening.screen import ScreeningConfig


def _map_views(views: list[int]) -> list[int]:
    views_per_zoom(views, len(views))  # the map's own check: counts it can average
    return views


def _hand_back_interval(seconds: float) -> float:
    # malloc_trim walks every arena and the next pass faults the pages in again: not a
    # busy loop
    if 0 < seconds < 1:
        raise ValueError("0 (off) or at least 1 second")
    return seconds


class Settings(BaseSettings):
    """Runtime settings shared by the CLI and the service."""

    model_config = SettingsConfigDict(env_prefix="GUNMATCH_", env_file=".env", extra="ignore")

    gallery: Path | None = None
    state_dir: Path | None = None
    models_dir: Path | None = Field(None, description="model registry (default GALLERY.models)")
    database_url: str = Field(
        "",
        description="PostgreSQL URL for a new shared gallery's items and service state (keys, "
        "sessions, audit chain, feedback); empty = the embedded SQLite files in the gallery "
        "directory",
    )
    vector_uri: str = Field(
        "",
        description="Milvus URI (http://host:19530) for a shared gallery's vectors; empty = "
        "the embedded FAISS index file",
    )
    api_key: str | None = Field(
        None, description="admin key the CLI sends when it asks a service to reload"
    )
    threads: int = Field(2, ge=1, description="torch intra-op threads")
    runtime: str = Field(
        "onnx",
        description="inference path (matcher.fast): torch | onnx | onnx_int8 | torch_bf16; "
        "onnx passed the top-1 agreement check (docs/benchmarks.md)",
    )
    batch_size: int = Field(32, ge=1, le=512)
    max_upload_bytes: int = Field(20_000_000, ge=1)
    max_pixels: int = Field(50_000_000, ge=1)
    max_batch_images: int = Field(16, ge=1)
    queue_size: int = Field(8, ge=1, description="embedding requests waiting before 503")
    audit_retention_days: int = Field(90, ge=0)
    default_k: int = Field(10, ge=1, le=100)
    calibration_file: Path | None = None
    embed_workers: int = Field(1, ge=1, le=16, description="threads running embeddings")
    screen_score_mode: Literal["match", "margin"] = Field(
        "match",
        description="X-ray region score: match (the calibration's scale) or margin (minus the "
        "best benign similarity; see screening.screen.ScreeningConfig)",
    )
    screen_score_k: int = Field(1, ge=1, le=50, description="references averaged per side")
    screen_map_weight: float = Field(
        1.0,  # = ScreeningConfig.map_weight (a test keeps them equal)
        ge=0.0,
        le=100.0,
        description="weight of the gallery's X-ray threat map logit (log-odds) in region "
        "scores (0 = its regions are screened but do not add to scores)",
    )
    screen_map_zooms: list[Annotated[float, Field(ge=ZOOM_RANGE[0], le=ZOOM_RANGE[1])]] = Field(
        default_factory=lambda: list(ScreeningConfig.map_zooms),
        min_length=1,
        max_length=4,
        description="sizes the X-ray threat map runs at, as multiples of its own (JSON list; "
        "[1] alone is faster and finds fewer small parts)",
    )
    screen_map_views: Annotated[list[int], AfterValidator(_map_views)] = Field(
        default_factory=lambda: list(ScreeningConfig.map_views),
        min_length=1,
        max_length=4,
        description="views of the scan the X-ray threat map averages at each of its sizes "
        "(JSON list, one count for all or one per size): 1 = the scan; 2 = and its mirror "
        "image; 4 = and both upside down",
    )
    microbatch_ms: float = Field(
        0.0,
        ge=0.0,
        le=100.0,
        description="coalesce concurrent requests arriving within this many ms into one "
        "forward pass (0 = off; measured no gain on 2 cores, see docs/benchmarks.md)",
    )

    audit_secret_file: Path = Field(
        default_factory=lambda: Path.home() / ".config" / "gunmatch" / "audit.key",
        description="HMAC secret(s) of the audit chain, one hex secret a line (the last signs "
        "new rows); created 0600 on first use; must lie outside the gallery and state dirs",
    )
    memory_hand_back_s: Annotated[float, AfterValidator(_hand_back_interval)] = Field(
        60.0,
        ge=0.0,
        description="the service keeps the memory a model pass frees for the next pass and "
        "hands what is free back to the system this often, in seconds; 0: glibc's own way "
        "(each large block handed back when freed, slower passes)",
    )
    reload_poll_s: float = Field(
        1.0,
        ge=0.05,
        le=2.0,
        description="how often a replica of a shared gallery checks the reload generation "
        "in its database (a reload of any replica reloads every one)",
    )
    session_ttl_s: int = Field(
        12 * 3600, ge=60, le=30 * 86400, description="web sign-in sessions expire after this"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="origins (scheme://host[:port]) besides the service's own that may send "
        "cookie-authenticated writes (e.g. behind a reverse proxy)",
    )
    auth_fail_limit: int = Field(
        10, ge=0, le=10_000, description="failed sign-ins/keys per client before 429 (0 = off)"
    )
    auth_fail_window_s: float = Field(
        60.0, gt=0, le=86_400, description="window of auth_fail_limit; also the 429 wait"
    )
    mixed_modality: bool = Field(
        False,
        description="declare the gallery mixed: queries and references of either modality are "
        "accepted (otherwise a modality other than the gallery's is refused with 422)",
    )

    def screening_config(self) -> ScreeningConfig:
        """The service's X-ray region screening settings."""
        return ScreeningConfig(
            score_mode=self.screen_score_mode,
            score_k=self.screen_score_k,
            map_weight=self.screen_map_weight,
            map_zooms=tuple(self.screen_map_zooms),
            map_views=tuple(self.screen_map_views),
        )


def get_settings(**overrides) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. from CLI flags)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
