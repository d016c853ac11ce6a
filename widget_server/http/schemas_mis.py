"""Schemas of the MIS API: Helix imports, sync runs and their records."""

from __future__ import annotations

from marshmallow import Schema, validate
from marshmallow import fields as f

from ..models import SYNC_OUTCOMES
from .schemas import StrictSchema

__all__ = ["ImportAcceptedSchema", "SyncRecordSchema", "SyncRecordsQuerySchema", "SyncRunSchema"]


class ImportAcceptedSchema(Schema):
    import_id = f.Integer()
    duplicate = f.Boolean(
        metadata={"description": "the same file (SHA-256) was imported before: its first run"}
    )
    state = f.String(metadata={"description": "queued → done, or failed with the run's error"})
    status_url = f.String(metadata={"description": "the sync run: state, counts and per-record outcomes"})
    counts = f.Dict(keys=f.String(), values=f.Integer())


class SyncRunSchema(Schema):
    id = f.Integer()
    source = f.String()
    file_name = f.String(allow_none=True)
    file_sha256 = f.String(allow_none=True)
    period_from = f.Date(allow_none=True)
    period_to = f.Date(allow_none=True)
    counts = f.Dict(keys=f.String(), values=f.Integer())
    state = f.String()
    error = f.String(allow_none=True)
    created_at = f.DateTime()
    finished_at = f.DateTime(allow_none=True)


class SyncRecordSchema(Schema):
    row = f.Integer(allow_none=True)
    source_id = f.String(allow_none=True)
    outcome = f.String(validate=validate.OneOf(SYNC_OUTCOMES))
    field = f.String(allow_none=True)
    reason = f.String(allow_none=True)
    value = f.String(allow_none=True)
    deal_id = f.String(allow_none=True)


class SyncRecordsQuerySchema(StrictSchema):
    outcome = f.String(validate=validate.OneOf(SYNC_OUTCOMES))


class SyncRunsQuerySchema(StrictSchema):
    limit = f.Integer(load_default=50, validate=validate.Range(min=1, max=500))
