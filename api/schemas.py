"""Pydantic schemas for every request and response body."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gunmatch.state import check_name

# Bounds for every integer a client sends (SQLite integers are 64-bit).
OFFSET_MAX = 2**31 - 1
ID_MAX = 2**63 - 1


class ErrorOut(BaseModel):
    """Every error response."""

    detail: str


class MatchOut(BaseModel):
    """One gallery match (the CLI's JSON shape)."""

    rank: int
    item_id: str
    label: str
    category: str
    make_model: str
    calibre: str
    threat: bool
    score: float


class DecisionOut(BaseModel):
    """alert / review / clear, the threshold that decided it and the best threat match."""

    decision: Literal["alert", "review", "clear"]
    score: float | None = Field(None, description="best threat match's score")
    threshold: float | None = Field(None, description="threshold the score was held against")
    alert_threshold: float
    review_threshold: float
    calibrated: bool = Field(description="False when default thresholds are in use")
    best_threat: MatchOut | None = None


class HistoryOut(BaseModel):
    """An earlier search of the same image."""

    ts: str
    query_id: str
    key_name: str
    decision: str


class RegionOut(BaseModel):
    """One screened region of a scan (from screening.screen)."""
    model_config = ConfigDict(extra="allow")
    box: list[float]
    matches: list[dict] = []
    decision: str | dict | None = None


class SearchOut(BaseModel):
    """Result of one search."""

    query_id: str
    filename: str = ""
    sha256: str
    model_id: str
    modality: str
    elapsed_ms: float
    matches: list[MatchOut]
    decision: DecisionOut
    history: list[HistoryOut] = []
    regions: list[RegionOut] | None = None


class BatchEntryOut(BaseModel):
    """One image of a batch: a result or an error."""

    filename: str
    result: SearchOut | None = None
    error: ErrorOut | None = None
    status: int = 200


class BatchOut(BaseModel):
    """Result of a batch search, in upload order."""

    results: list[BatchEntryOut]


class CompareOut(BaseModel):
    """Similarity of two images (or an image and a gallery item)."""

    query_id: str
    similarity: float
    verdict: Literal["match", "possible_match", "different"]
    alert_threshold: float
    review_threshold: float
    calibrated: bool
    model_id: str
    item: MatchOut | None = None


class ItemOut(BaseModel):
    """A gallery item's metadata."""

    item_id: str
    label: str
    category: str
    modality: str
    threat: bool
    sha256: str
    added_at: str
    make_model: str = ""
    calibre: str = ""
    source: str = ""
    notes: str = ""
    added_by: str = ""
    width: int = 0
    height: int = 0
    thumbnail_url: str = ""


class ItemListOut(BaseModel):
    """A page of items."""

    total: int
    items: list[ItemOut]


class ItemCreatedOut(BaseModel):
    """Result of adding a reference."""

    item: ItemOut
    added: bool = Field(description="False when the same image was already in the gallery")


class ItemPatch(BaseModel):
    """Editable fields of an item (omitted fields are left alone)."""

    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(None, min_length=1, max_length=200)
    category: str | None = None
    make_model: str | None = Field(None, max_length=200)
    calibre: str | None = Field(None, max_length=100)
    threat: bool | None = None
    source: str | None = Field(None, max_length=500)
    notes: str | None = Field(None, max_length=2000)


class GalleryInfoOut(BaseModel):
    """Summary of the gallery."""

    model_id: str
    dim: int
    modality: str
    items: int
    vectors: int
    labels: dict[str, int]
    categories: list[dict]


class NewReferenceIn(BaseModel):
    """Metadata for adding a feedback query as a new reference."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=200)
    category: str = "other"
    threat: bool = False
    make_model: str = ""
    calibre: str = ""
    notes: str = ""


class FeedbackIn(BaseModel):
    """An analyst's judgement of one result of an earlier search."""

    model_config = ConfigDict(extra="forbid")
    query_id: str = Field(min_length=1, max_length=64)
    item_id: str = Field("", max_length=64, description="the result judged ('' for none)")
    verdict: Literal["correct", "wrong"]
    correct_label: str | None = Field(None, max_length=200)
    add_reference: NewReferenceIn | None = Field(
        None, description="also add the query image to the gallery with this metadata"
    )


class FeedbackOut(BaseModel):
    """A stored feedback row."""

    id: int
    created_at: str
    key_name: str
    query_id: str
    query_sha256: str
    query_image: str
    item_id: str
    verdict: str
    correct_label: str | None = None
    added_item_id: str | None = None


class FeedbackListOut(BaseModel):
    """Feedback rows, newest last."""

    total: int
    feedback: list[FeedbackOut]


class KeyIn(BaseModel):
    """Create a key."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="printable, 1-100 characters")
    role: Literal["station", "analyst", "admin"]

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        return check_name(v)


class KeyOut(BaseModel):
    """A key's record (never the secret)."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: str
    revoked_at: str | None = None
    last_used_at: str | None = None
    active: bool


class KeyCreatedOut(BaseModel):
    """A new key; ``key`` is shown this once."""

    key: str
    record: KeyOut


class SessionIn(BaseModel):
    """Sign in to the web form with an API key."""

    api_key: str = Field(min_length=1, max_length=200)


class SessionOut(BaseModel):
    """Who is signed in."""

    name: str
    role: str


class SessionRecordOut(BaseModel):
    """A web session's record (never its token); times are Unix seconds."""

    id: int
    key_id: int
    key_name: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    active: bool


class AuditOut(BaseModel):
    """One audit record."""

    id: int
    ts: str
    action: str
    key_name: str
    query_id: str
    image_sha256: str
    image_file: str
    model_id: str
    decision: str
    results: object
    prev_hash: str
    hash: str
    key_id: str = Field("", description="id of the audit secret that signed the row")


class AuditListOut(BaseModel):
    """A page of audit records, newest first."""

    total: int
    records: list[AuditOut]


class VerifyOut(BaseModel):
    """Result of checking the audit chain."""

    ok: bool
    rows: int
    bad_id: int | None = None
    problem: str = ""


class HealthOut(BaseModel):
    """Liveness / readiness."""

    status: str
    model_id: str | None = None
    items: int | None = None
    reloads: int | None = None


class ReloadOut(BaseModel):
    """After a reload."""

    model_id: str
    items: int
    reloads: int
    calibrated: bool


class AdaptIn(BaseModel):
    """Adapt the threat map to this station's scanner on the scans the service declared clear."""

    model_config = ConfigDict(extra="forbid")

    minutes: float = Field(15.0, ge=1.0, le=120.0, description="time budget")
    max_scans: int = Field(200, ge=4, le=5000, description="newest cleared scans to use")
    gate_margin: float = Field(
        0.02, ge=0.0, le=0.2, description="largest drop of the generated-parcel AUC accepted"
    )


class AdaptStatusOut(BaseModel):
    """The adaptation job: running (with its phase), done (installed), refused or failed."""

    state: Literal["idle", "running", "done", "refused", "failed"]
    phase: str
    started: float | None = None
    budget_s: float
    scans: int
    elapsed_s: float
    error: str
    report: dict | None = None
