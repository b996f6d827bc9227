"""Profile attributes (seed 003): the caller's own attributes and their consolidation."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import Response, jsonify
from marshmallow import validate

from focus_app.api.auth import current_user_id, require_user
from focus_app.api.base import Args, Blueprint
from focus_app.api.pagination import PageArgsSchema, page_schema
from focus_app.extensions import db_session, llm_provider, settings
from focus_app.models.attributes import CATEGORIES, ProfileAttribute
from focus_app.services.attributes import job, store
from focus_app.services.jobkit.pagination import Page
from workers.publish import publish

URL_PREFIX = "/profile/attributes"
blp = Blueprint("profile_attributes", __name__, description="Profile attributes and their consolidation")
blp.before_request(require_user)

ENTITY_TYPE = "user"  # through the API a caller only ever reaches their own user profile


def _printable(value: str) -> None:
    if not value.strip() or not value.isprintable():
        raise ma.ValidationError("must be non-blank printable text")


class AttributeCreateSchema(ma.Schema):
    category = ma.fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    key = ma.fields.String(required=True, validate=[validate.Length(min=1, max=100), _printable])
    value = ma.fields.String(required=True, validate=[validate.Length(min=1, max=500), _printable])
    confidence = ma.fields.Float(load_default=0.7, validate=validate.Range(min=0, max=1), allow_nan=False)
    source = ma.fields.String(load_default="user", validate=[validate.Length(min=1, max=50), _printable])


class AttributeSchema(ma.Schema):
    id = ma.fields.UUID()
    category = ma.fields.String()
    key = ma.fields.String()
    value = ma.fields.String()
    confidence = ma.fields.Float()
    source = ma.fields.String()
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class AttributeArgsSchema(PageArgsSchema):
    category = ma.fields.String(load_default=None, validate=validate.OneOf(CATEGORIES))


AttributePageSchema = page_schema(AttributeSchema, "AttributePage")


class ConsolidateSchema(ma.Schema):
    dry_run = ma.fields.Boolean(load_default=True, metadata={"description": "true: answer the plan only"})


class ConsolidationDecisionSchema(ma.Schema):
    action = ma.fields.String(metadata={"enum": ["renamed", "merged", "resolved", "removed"]})
    attribute = ma.fields.Dict()
    into = ma.fields.Dict(allow_none=True)
    reason = ma.fields.String()


class PlanSchema(ma.Schema):
    consolidator = ma.fields.String()
    changed = ma.fields.Boolean()
    counts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    before = ma.fields.List(ma.fields.Dict())
    after = ma.fields.List(ma.fields.Dict())
    merged = ma.fields.List(ma.fields.Nested(ConsolidationDecisionSchema))
    dropped = ma.fields.List(ma.fields.Nested(ConsolidationDecisionSchema))
    renamed = ma.fields.List(ma.fields.Nested(ConsolidationDecisionSchema))
    error = ma.fields.String(allow_none=True)


class EnqueuedSchema(ma.Schema):
    task_id = ma.fields.String(allow_none=True, metadata={"description": "poll GET /jobs/{task_id}"})
    status = ma.fields.String(metadata={"enum": ["queued", "deferred"]})
    message = ma.fields.String()


@blp.route("", methods=["GET"])
@blp.arguments(AttributeArgsSchema, location="query")
@blp.response(200, AttributePageSchema)
def list_attributes(args: Args) -> Page[ProfileAttribute]:
    """List the caller's profile attributes by category and key"""
    return store.list_attributes(db_session(), current_user_id(), ENTITY_TYPE, **args)


@blp.route("", methods=["POST"])
@blp.arguments(AttributeCreateSchema)
@blp.response(201, AttributeSchema)
@blp.alt_response(
    200, schema=AttributeSchema, description="An attribute with this category and key was restated"
)
def create_attribute(body: Args) -> tuple[ProfileAttribute, int]:
    """Record a profile attribute (restating an existing category and key updates it)"""
    attribute, created = store.set_attribute(
        db_session(),
        current_user_id(),
        ENTITY_TYPE,
        max_per_entity=settings().profile_attributes_max_per_entity,
        **{**body, "key": body["key"].strip(), "value": body["value"].strip()},
    )
    return attribute, 201 if created else 200


@blp.route("/<uuid:attribute_id>", methods=["DELETE"])
@blp.response(204)
def delete_attribute(attribute_id: uuid.UUID) -> None:
    """Delete one of the caller's attributes"""
    store.delete_attribute(db_session(), current_user_id(), ENTITY_TYPE, attribute_id)


@blp.route("/consolidate", methods=["POST"])
@blp.arguments(ConsolidateSchema)
@blp.response(200, PlanSchema)
@blp.alt_response(202, schema=EnqueuedSchema, description="dry_run=false: the consolidation was queued")
def consolidate(body: Args) -> dict[str, Any] | Response:
    """Consolidate the caller's attributes: the explained plan (dry run) or queue it"""
    user_id = current_user_id()
    if body["dry_run"]:
        plan = job.dry_run(db_session(), llm_provider("consolidation"), user_id, ENTITY_TYPE)
        return plan.as_dict()
    task_id = publish(
        job.ENTITY_JOB_NAME,
        args=[user_id, ENTITY_TYPE, False],
        kwargs={"trigger": "api"},
        owner=user_id,
    )
    if task_id is None:
        body = {
            "task_id": None,
            "status": "deferred",
            "message": "queue unavailable; the scheduled run will do it",
        }
    else:
        body = {"task_id": task_id, "status": "queued", "message": "poll GET /api/v1/jobs/{task_id}"}
    # The 200 schema is the plan's: answer the 202 body through its own schema.
    response = jsonify(EnqueuedSchema().dump(body))
    response.status_code = 202
    return response
