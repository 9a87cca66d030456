"""Farms and their fields."""

from __future__ import annotations

from fastapi import APIRouter, Response
from khet.service import storage
from khet.service.db import Farm, Field, User
from khet.service.dependencies import (
    DB,
    CurrentUser,
    ForbiddenError,
    IdPath,
    can_edit,
    get_farm,
    get_field,
    visible_farms,
)
from khet.service.geometry import validate_boundary
from khet.service.schemas import FarmIn, FarmOut, FieldIn, FieldOut, FieldPatch
from sqlalchemy import select

from khet.errors import InputError, NotFoundError

router = APIRouter(prefix="/api/v1", tags=["farms and fields"])


@router.post("/farms", response_model=FarmOut, status_code=201, summary="Create a farm")
def create_farm(body: FarmIn, user: CurrentUser, db: DB) -> Farm:
    """A farmer creates their own farms; an admin may create one for a farmer (owner_id)."""
    if user.role == "extension":
        raise ForbiddenError("Extension workers cannot create farms; an admin assigns them.")
    owner_id = user.id
    if body.owner_id is not None and body.owner_id != user.id:
        if user.role != "admin":
            raise ForbiddenError("Only an administrator can create a farm for someone else.")
        owner = db.get(User, body.owner_id)
        if owner is None:
            raise NotFoundError("No such user.")
        if owner.role != "farmer":
            raise InputError("A farm's owner must be a farmer.")
        owner_id = owner.id
    farm = Farm(name=body.name, owner_id=owner_id)
    db.add(farm)
    db.commit()
    return farm


@router.get("/farms", response_model=list[FarmOut], summary="The farms you can see")
def list_farms(user: CurrentUser, db: DB) -> list[Farm]:
    """The farms you own, are assigned to, or (administrators) all of them."""
    return list(db.scalars(visible_farms(user).order_by(Farm.id)))


@router.get("/farms/{farm_id}", response_model=FarmOut, summary="One farm")
def read_farm(farm_id: IdPath, user: CurrentUser, db: DB) -> Farm:
    """One farm you can see."""
    return get_farm(db, user, farm_id)


@router.delete("/farms/{farm_id}", status_code=204, summary="Delete a farm, its fields and flights")
def delete_farm(farm_id: IdPath, user: CurrentUser, db: DB) -> Response:
    """Delete a farm with its fields, flights and their files (owner or administrator)."""
    farm = get_farm(db, user, farm_id)
    if not can_edit(user, farm):
        raise ForbiddenError("Only the farm's owner or an administrator can delete it.")
    db.delete(farm)
    db.commit()
    storage.remove_tree(storage.data_dir() / "farms" / str(farm_id))
    return Response(status_code=204)


def _apply_boundary(field: Field, boundary: dict | None) -> None:
    if boundary is None:
        field.boundary, field.area_ha = None, None
    else:
        field.boundary, area = validate_boundary(boundary)
        field.area_ha = round(area, 4)


@router.post(
    "/farms/{farm_id}/fields",
    response_model=FieldOut,
    status_code=201,
    summary="Add a field to a farm",
)
def create_field(farm_id: IdPath, body: FieldIn, user: CurrentUser, db: DB) -> Field:
    """Add a field to a farm you can edit."""
    farm = get_farm(db, user, farm_id)
    if not can_edit(user, farm):
        raise ForbiddenError("Only the farm's owner or an administrator can add fields.")
    field = Field(farm_id=farm.id, name=body.name, crop=body.crop)
    _apply_boundary(field, body.boundary)
    db.add(field)
    db.commit()
    return field


@router.get("/farms/{farm_id}/fields", response_model=list[FieldOut], summary="A farm's fields")
def list_fields(farm_id: IdPath, user: CurrentUser, db: DB) -> list[Field]:
    """The fields of a farm you can see."""
    farm = get_farm(db, user, farm_id)
    return list(db.scalars(select(Field).where(Field.farm_id == farm.id).order_by(Field.id)))


@router.get("/fields/{field_id}", response_model=FieldOut, summary="One field")
def read_field(field_id: IdPath, user: CurrentUser, db: DB) -> Field:
    """One field you can see."""
    return get_field(db, user, field_id)


@router.patch(
    "/fields/{field_id}",
    response_model=FieldOut,
    summary="Rename a field, change its crop or boundary (null removes the boundary)",
)
def patch_field(field_id: IdPath, body: FieldPatch, user: CurrentUser, db: DB) -> Field:
    """Change a field's name, crop or boundary (owner or administrator)."""
    field = get_field(db, user, field_id)
    if not can_edit(user, field.farm):
        raise ForbiddenError("Only the farm's owner or an administrator can change fields.")
    given = body.model_fields_set
    if "name" in given:
        if body.name is None:
            raise InputError("A field needs a name.")
        field.name = body.name
    if "crop" in given:
        field.crop = body.crop
    if "boundary" in given:
        _apply_boundary(field, body.boundary)
    db.commit()
    return field


@router.delete("/fields/{field_id}", status_code=204, summary="Delete a field and its flights")
def delete_field(field_id: IdPath, user: CurrentUser, db: DB) -> Response:
    """Delete a field with its flights and their files (owner or administrator)."""
    field = get_field(db, user, field_id)
    if not can_edit(user, field.farm):
        raise ForbiddenError("Only the farm's owner or an administrator can delete fields.")
    farm_id = field.farm_id
    db.delete(field)
    db.commit()
    storage.remove_tree(storage.data_dir() / "farms" / str(farm_id) / "fields" / str(field_id))
    return Response(status_code=204)
