"""The web app: server-rendered pages (Jinja2) over the same data and access rules as the API.

No build step and no CDN: the little JavaScript is plain files in service/static/khet, and Leaflet
is served from the xstatic-leaflet package, because field offices are often offline from the wider
internet. The pages read through the same dependencies as the API (`visible_farms`, `get_field`,
`get_flight`), so a page never shows what the API would hide; the browser then talks to the JSON
API itself (uploads, tiles, point queries) with the session cookie.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlparse

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from khet.service import report as rp
from khet.service import storage
from khet.service.db import ApiToken, Farm, Field, Flight, User, UserSettings, WebSession, now
from khet.service.dependencies import (
    DB,
    MAX_ID,
    ForbiddenError,
    can_edit,
    current_user_optional,
    get_field,
    get_flight,
    visible_farms,
)
from khet.service.errors import headers_for, status_for
from khet.service.i18n import DIRECTION, LANGUAGES, Translator, pick_language
from khet.service.ratelimit import TooManyAttempts
from khet.service.routers import auth
from khet.service.tiles import INDEX_RE
from khet.vision import products
from sqlalchemy import select
from sqlalchemy.orm import Session

from khet import __version__
from khet.errors import AuthError, KhetError, NotFoundError

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LANG_COOKIE = "khet_lang"
DEFAULT_THRESHOLDS = {"weed_share": 0.10, "low_vigour_share": 0.25}

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.globals.update(
    languages=LANGUAGES, version=__version__, pct=rp.pct, fmt_area=rp.fmt_area
)
templates.env.filters["tojson_attr"] = lambda v: json.dumps(v, ensure_ascii=False)

OptionalUser = Annotated[User | None, Depends(current_user_optional)]


def mount(app) -> None:
    """Static files: the app's own CSS/JS and Leaflet from the xstatic package."""
    import xstatic.pkg.leaflet as leaflet
    from fastapi.staticfiles import StaticFiles

    app.add_exception_handler(_LoginRequired, lambda request, exc: _to_login(request))
    app.add_exception_handler(_PageNotFound, lambda request, exc: _not_found(request, exc.user))
    app.mount("/static/khet", StaticFiles(directory=str(STATIC / "khet")), name="khet-static")
    app.mount("/static/leaflet", StaticFiles(directory=leaflet.BASE_DIR), name="leaflet")


# --- helpers -----------------------------------------------------------------------------------


def _lang(request: Request) -> str:
    return pick_language(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))


def _render(
    request: Request, name: str, ctx: dict, status: int = 200, user: User | None = None
) -> HTMLResponse:
    lang = _lang(request)
    t = Translator(lang)
    ctx = {
        "request": request,
        "t": t,
        "lang": lang,
        "dir": DIRECTION[lang],
        "user": user,
        "path": request.url.path,
        **ctx,
    }
    resp = templates.TemplateResponse(request, name, ctx, status_code=status)
    if request.query_params.get("lang") in LANGUAGES:
        resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    return resp


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def _not_found(request: Request, user: User | None) -> HTMLResponse:
    return _render(request, "error.html", {}, status=404, user=user)


class _LoginRequired(Exception):
    """A page asked for by someone not logged in: answered with a redirect to /login."""


class _PageNotFound(Exception):
    """Not there or not theirs: the HTML twin of the API's 404 (ids cannot be probed)."""

    def __init__(self, user: User) -> None:
        self.user = user


def page_user(user: OptionalUser) -> User:
    """The logged-in user of a page; sends others to the login page."""
    if user is None:
        raise _LoginRequired()
    return user


PageUser = Annotated[User, Depends(page_user)]


def _page_id(text: str | None, user: User) -> int:
    """An id from a page's address: a not-found page for anything else ('abc' answered the
    API's JSON error in the browser), as for an id that is not there."""
    if not text or not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise _PageNotFound(user)
    value = int(text)
    if not 0 < value <= MAX_ID:  # SQLite cannot even bind an id past 2**63: not found
        raise _PageNotFound(user)
    return value


def page_field(field_id: str, user: PageUser, db: DB) -> Field:
    """A field the page's user may see; a not-found page otherwise."""
    try:
        return get_field(db, user, _page_id(field_id, user))
    except NotFoundError:
        raise _PageNotFound(user) from None


def page_flight(flight_id: str, user: PageUser, db: DB) -> Flight:
    """A flight the page's user may see; a not-found page otherwise."""
    try:
        return get_flight(db, user, _page_id(flight_id, user))
    except NotFoundError:
        raise _PageNotFound(user) from None


PageField = Annotated[Field, Depends(page_field)]
PageFlight = Annotated[Flight, Depends(page_flight)]


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect a login to another site."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    u = urlparse(target)
    return u.path if not u.netloc and not u.scheme else "/"


def thresholds(db: Session, user: User) -> dict[str, float]:
    """The user's visit thresholds (weed share, low vigour share), defaults filled in."""
    row = db.get(UserSettings, user.id)
    out = dict(DEFAULT_THRESHOLDS)
    for k, v in ((row.settings if row else None) or {}).get("visit", {}).items():
        if k in out and isinstance(v, int | float):
            out[k] = float(v)
    return out


def _status(flight: Flight | None) -> str | None:
    if flight is None:
        return None
    return flight.job.status if flight.job else "done"


def field_card(db: Session, field: Field, limits: dict[str, float]) -> dict:
    """A field's latest flight (its status) and latest map (its shares, visit flag and links),
    for the dashboard: a failed or running upload no longer hides the maps the field has."""
    flights = list(
        db.scalars(
            select(Flight).where(Flight.field_id == field.id).order_by(Flight.id.desc()).limit(50)
        )
    )
    latest = flights[0] if flights else None
    status = _status(latest)
    mapped = next((f for f in flights if _status(f) == "done"), None)
    ws = lv = None
    visit = False
    if mapped is not None:
        ws, lv = rp.weed_share(mapped.summary), rp.low_vigour_share(mapped.summary)
        visit = (ws is not None and ws > limits["weed_share"]) or (
            lv is not None and lv > limits["low_vigour_share"]
        )
    return {
        "field": field,
        "latest": latest,
        "status": status,
        "date": rp.flight_date(latest) if latest else None,
        "mapped": mapped,
        "mapped_date": rp.flight_date(mapped) if mapped is not None else None,
        "weed": ws,
        "low": lv,
        "visit": visit,
        "progress": latest.job.progress if latest is not None and latest.job else None,
    }


# --- login -------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: OptionalUser, next: str | None = None) -> Response:
    """The login form; a logged-in user goes straight on."""
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, db: DB) -> Response:
    """Log in from the form: a session cookie, or the form again with the reason."""
    form = await request.form()
    email = str(form.get("email") or "").strip().lower()[:254]
    password = str(form.get("password") or "")[:256]
    target = _safe_next(str(form.get("next") or "/"))
    try:
        found = await run_in_threadpool(auth.login_user, db, email, password, request)
    except (AuthError, TooManyAttempts) as e:
        limited = isinstance(e, TooManyAttempts)
        page: Response = _render(
            request,
            "login.html",
            {
                "next": target,
                "error": "login_limited" if limited else "login_failed",
                "email": email,
            },
            status=status_for(e),
        )
        page.headers.update(headers_for(e, status_for(e)))
        return page
    resp = RedirectResponse(target, status_code=303)
    await run_in_threadpool(auth.start_session, db, found, request, resp)
    return resp


@router.post("/logout")
def logout(request: Request, db: DB) -> Response:
    """End this browser's session and go to the login page."""
    resp = RedirectResponse("/login", status_code=303)
    auth.end_session(db, request, resp)
    return resp


# --- dashboard ---------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, user: PageUser, db: DB) -> Response:
    """The farms and fields the user can see, those that need a visit first."""
    return _dashboard(request, user, db)


def _dashboard(
    request: Request, user: User, db: Session, errors: list[str] | None = None
) -> Response:
    """The dashboard page; with `errors` (a refused thresholds form), a 422 that shows them."""
    limits = thresholds(db, user)
    farms = []
    for farm in db.scalars(visible_farms(user).order_by(Farm.name, Farm.id)):
        fields = db.scalars(select(Field).where(Field.farm_id == farm.id).order_by(Field.id))
        cards = [field_card(db, f, limits) for f in fields]
        farms.append(
            {
                "farm": farm,
                "cards": cards,
                "owner": farm.owner,
                "visits": sum(1 for c in cards if c["visit"]),
            }
        )
    return _render(
        request,
        "dashboard.html",
        {
            "farms": farms,
            "limits": limits,
            "saved": request.query_params.get("saved") == "1" and not errors,
            "visit_errors": errors or [],
        },
        status=422 if errors else 200,
        user=user,
    )


@router.post("/settings/visit")
async def save_thresholds(request: Request, user: PageUser, db: DB) -> Response:
    """Save the visit thresholds from the dashboard's form: both or neither. A value that is
    not a percentage from 0 to 100 (text, a negative number, NaN, 1e308) saves nothing and
    shows the page again (422) saying which, and that the old value still holds."""
    form = await request.form()
    limits = thresholds(db, user)
    t = Translator(_lang(request))
    errors = []
    for key, name, label in (
        ("weed_share", "weed", "weed_threshold"),
        ("low_vigour_share", "low", "low_threshold"),
    ):
        if name not in form:
            continue  # not sent: unchanged
        raw = str(form.get(name, "")).strip()
        try:
            value = float(raw.replace(",", "."))
        except ValueError:
            value = math.nan
        if math.isfinite(value) and 0 <= value <= 100:
            limits[key] = round(value / 100, 4)
        else:
            shown = raw if len(raw) <= 24 else raw[:24] + "…"
            errors.append(
                t("threshold_invalid", what=t(label), value=shown, old=rp.pct(limits[key]))
            )
    if errors:
        db.rollback()
        return _dashboard(request, user, db, errors)
    row = db.get(UserSettings, user.id)
    if row is None:
        row = UserSettings(user_id=user.id, settings={})
        db.add(row)
    row.settings = {**(row.settings or {}), "visit": limits}
    row.updated_at = now()
    db.commit()
    return RedirectResponse("/?saved=1#visit-settings", status_code=303)


# --- fields, upload ----------------------------------------------------------------------------


def _done(flight: Flight) -> bool:
    return _status(flight) == "done" and bool(flight.summary)


@router.get("/fields/{field_id}", response_class=HTMLResponse)
def field_page(field: PageField, request: Request, user: PageUser, db: DB) -> Response:
    """A field's flights, newest first."""
    flights = list(
        db.scalars(select(Flight).where(Flight.field_id == field.id).order_by(Flight.id.desc()))
    )
    rows = [
        {
            "flight": f,
            "status": _status(f),
            "date": rp.flight_date(f),
            "weed": rp.weed_share(f.summary),
            "low": rp.low_vigour_share(f.summary),
            "progress": f.job.progress if f.job else 1.0,
        }
        for f in flights
    ]
    done = [f for f in flights if _done(f)]
    return _render(
        request,
        "field.html",
        {
            "field": field,
            "rows": rows,
            "done": done,
            "card": field_card(db, field, thresholds(db, user)),
        },
        user=user,
    )


@router.get("/fields/{field_id}/upload", response_class=HTMLResponse)
def upload_page(field: PageField, request: Request, user: PageUser, db: DB) -> Response:
    """The page that uploads a flight's imagery to a field."""
    ctx = {"field": field, "crop_editable": can_edit(user, field.farm)}
    return _render(request, "upload.html", ctx, user=user)


# --- the map of one flight ---------------------------------------------------------------------


def map_layers(flight: Flight, t: Translator) -> list[dict]:
    """The overlays the map offers, each with what its legend shows."""
    summary = rp.mapping(flight.summary)
    layers: list[dict[str, Any]] = [
        {
            "id": "classes",
            "label": t("layer_classes"),
            "legend": [
                {"label": t.name("cls", c["name"]), "color": rp.color(c.get("color"))}
                for c in rp.dicts(summary.get("classes"))
                if rp.text(c.get("name"))
            ],
        }
    ]
    vig = rp.mapping(summary.get("vigour"))
    if rp.text(vig.get("index")) and rp.dicts(vig.get("levels")):
        layers.append(
            {
                "id": "vigour",
                "label": t("layer_vigour"),
                "legend": [
                    {"label": t.name("lvl", lv["name"]), "color": rp.color(lv.get("color"))}
                    for lv in rp.dicts(vig.get("levels"))
                    if rp.text(lv.get("name"))
                ],
                "note": rp.text(vig.get("rule")),
            }
        )
    for name, st in rp.mapping(summary.get("indices")).items():
        if not isinstance(st, dict) or not INDEX_RE.match(str(name)):
            continue
        lo, hi = rp.num(st.get("p10")), rp.num(st.get("p90"))
        if lo is None or hi is None or hi <= lo:
            lo, hi = rp.num(st.get("min"), -1.0), rp.num(st.get("max"), 1.0)
        layers.append(
            {
                "id": name,
                "label": rp.text(st.get("title")) or name.upper(),
                "gradient": {"colors": list(rp.INDEX_COLORS), "lo": lo, "hi": hi},
                "note": rp.text(st.get("formula")),
            }
        )
    return layers


def _picture(flight: Flight, results: Path, inline: bool = False) -> str | None:
    """The map's picture for an <img>: the preview (by URL, or `inline` as a data URI for the
    PDF), else the class map drawn in its colours (a device's flight sent without its imagery),
    else None."""
    preview = results / products.PREVIEW.path
    if preview.is_file():
        if inline:
            return rp.data_uri(preview)
        return f"/api/v1/flights/{flight.id}/results/{products.PREVIEW.path}"
    drawing = rp.class_drawing(results)
    return rp.data_uri(drawing) if drawing else None


def _results_dir(flight: Flight) -> Path:
    f = flight.field
    return storage.flight_dir(f.farm_id, f.id, flight.id) / "results"


def _management(flight: Flight, results: Path) -> dict:
    """The zones and prescriptions already made for the flight, for the page's script."""
    from khet.vision import prescription as rx

    base = f"/api/v1/flights/{flight.id}/results/"
    return {
        k: v | {"downloads": {role: base + name for role, name in v.get("files", {}).items()}}
        for k, v in rx.listing(results).items()
    }


def _on_a_map(summary: dict[str, Any], results: Path) -> bool:
    """Whether a flight's map can be laid on the web map: its imagery had a CRS. Hectares alone
    do not say so: a photo with a stated GSD has approximate hectares but no place on Earth,
    and its classes.tif no CRS for the tiles (the page showed an empty map and a script error)."""
    crs = rp.mapping(summary.get("input")).get("crs")
    return bool(crs) and rp.area_unit(summary) == "ha" and (results / "classes.tif").is_file()


@router.get("/flights/{flight_id}", response_class=HTMLResponse)
def flight_page(flight: PageFlight, request: Request, user: PageUser, db: DB) -> Response:
    """One flight: its status, map layers, legend and summary."""
    return _flight_page(request, flight, user)


@router.post("/flights/{flight_id}/retry")
async def flight_retry(flight: PageFlight, request: Request, user: PageUser, db: DB) -> Response:
    """A failed flight's analysis again, from its page, with the band names or ground sample
    distance its error asked for (the API's retry: same checks, same rules)."""
    from khet.service.routers.flights import retry_flight
    from khet.service.schemas import RetryIn
    from pydantic import ValidationError

    form = await request.form()
    given: dict[str, Any] = {}
    bands = str(form.get("bands") or "").strip()[:512]
    gsd = str(form.get("gsd") or "").strip()[:64]
    if bands:
        given["bands"] = [b.strip() for b in bands.split(",")]
    if gsd:
        given["gsd"] = gsd
    try:
        body = RetryIn.model_validate(given, strict=False) if given else None
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = ".".join(str(x) for x in err.get("loc", ()) if not isinstance(x, int))
        why = f"{where}: {err.get('msg', 'not valid')}"
        return _flight_page(request, flight, user, retry_error=why, status_code=422)
    try:
        await run_in_threadpool(retry_flight, flight.id, user, db, body)
    except KhetError as e:
        return _flight_page(request, flight, user, retry_error=e.message, status_code=status_for(e))
    return RedirectResponse(f"/flights/{flight.id}", status_code=303)


@router.post("/flights/{flight_id}/crop")
async def flight_crop(flight: PageFlight, request: Request, user: PageUser, db: DB) -> Response:
    """Set the crop of the field a map was made without one, and analyse the flight again: the
    field's crop decides whether a model that learned one crop makes the map (owner only)."""
    from khet.service.routers.flights import check_rerun, retry_flight
    from khet.service.schemas import FieldPatch
    from pydantic import ValidationError

    form = await request.form()
    crop = str(form.get("crop") or "").strip()[:512]
    t = Translator(_lang(request))
    if not crop:
        return _flight_page(request, flight, user, crop_error=t("crop_needed"), status_code=422)
    try:
        body = FieldPatch.model_validate({"crop": crop})
    except ValidationError as e:
        why = f"crop: {e.errors(include_url=False)[0].get('msg', 'not valid')}"
        return _flight_page(request, flight, user, crop_error=why, status_code=422)

    def save_and_rerun() -> None:
        # The re-run's checks first, so a refused re-run leaves the field's crop as it was.
        if not can_edit(user, flight.field.farm):
            raise ForbiddenError("Only the farm's owner or an administrator can set the crop.")
        check_rerun(flight, user)
        flight.field.crop = body.crop
        db.commit()
        retry_flight(flight.id, user, db, None)

    try:
        await run_in_threadpool(save_and_rerun)
    except KhetError as e:
        return _flight_page(request, flight, user, crop_error=e.message, status_code=status_for(e))
    return RedirectResponse(f"/flights/{flight.id}", status_code=303)


def _flight_page(
    request: Request,
    flight: Flight,
    user: User,
    retry_error: str | None = None,
    status_code: int = 200,
    crop_error: str | None = None,
) -> Response:
    t = Translator(_lang(request))
    status = _status(flight)
    summary = rp.mapping(flight.summary)
    unit = rp.area_unit(summary)
    results = _results_dir(flight)
    georef = status == "done" and _on_a_map(summary, results)
    report = rp.build_report(flight, results, t) if _done(flight) else None
    imagery = bool((flight.imagery or {}).get("tileable"))
    rerunnable = flight.source != "edge" and bool(flight.inputs)
    share = rp.mapping(summary.get("input")).get("looks_near_infrared")
    near_ir = f"{share:.0%}" if status == "done" and isinstance(share, int | float) else None
    inverted = rp.mapping(summary.get("input")).get("looks_misordered")
    misordered = (
        f"{inverted:.0%}" if status == "done" and isinstance(inverted, int | float) else None
    )
    read_as = ",".join(str(b) for b in rp.mapping(summary.get("input")).get("bands") or [])
    blue = rp.mapping(summary.get("input")).get("looks_swapped")
    swapped = f"{blue:.0%}" if status == "done" and isinstance(blue, int | float) else None
    config = {
        "flight": flight.id,
        "status": status,
        "georeferenced": georef,
        "imagery": imagery,
        "layers": map_layers(flight, t) if georef else [],
        "names": {
            c["name"]: t.name("cls", c["name"])
            for c in rp.dicts(summary.get("classes"))
            if rp.text(c.get("name"))
        },
        "levels": {lv: t.name("lvl", lv) for lv in ("low", "medium", "high")},
        "text": {
            k: t(k)
            for k in (
                "point_class",
                "point_confidence",
                "point_vigour",
                "point_outside",
                "not_ready",
                "zone",
                "downloads",
                "layer_zones",
                "hectares",
            )
        },
        "management": _management(flight, results) if status == "done" else {},
    }
    return _render(
        request,
        "flight.html",
        {
            "flight": flight,
            "field": flight.field,
            "status": status,
            "summary": summary,
            "georef": georef,
            "report": report,
            "config": config,
            "unit": unit,
            "picture_src": None if georef or status != "done" else _picture(flight, results),
            "progress": flight.job.progress if flight.job else 1.0,
            "stage": flight.job.stage if flight.job else None,
            "error": flight.job.error if flight.job else None,
            "retry_error": retry_error,
            "can_retry": status == "failed" and rerunnable,
            "bands_text": ",".join(flight.bands or []),
            # A finished map whose picture looks like a near-infrared camera's false colour: said
            # at the top, with the re-run its owner can ask for (bands named), not in the notes.
            "near_ir": near_ir,
            # Near-infrared darker than red over much of it: the bands' order, said the same way.
            "misordered": misordered,
            "read_as": read_as,
            # Red and blue swapped (soil reads blue): said the same way, re-run as blue,green,red.
            "swapped": swapped,
            "can_rerun": rerunnable and can_edit(user, flight.field.farm),
            # A model's map of a field whose crop was not set: said at the top, with the crop to
            # set and the re-run, as the colour alerts are.
            "crop_unstated": rp.crop_unstated(summary, t) if status == "done" else None,
            "crop_error": crop_error,
        },
        status=status_code,
        user=user,
    )


# --- the field report --------------------------------------------------------------------------


def _report_context(request: Request, flight: Flight, lang: str, pdf: bool) -> dict:
    t = Translator(lang)
    results = _results_dir(flight)
    preview_src = _picture(flight, results, inline=pdf)
    css = (STATIC / "khet" / "report.css").read_text(encoding="utf-8")
    return {
        "r": rp.build_report(flight, results, t),
        "preview_src": preview_src,
        "pdf": pdf,
        "report_css": css,
        "flight": flight,
        "today": now().date().isoformat(),
    }


@router.get("/flights/{flight_id}/report", response_class=HTMLResponse)
def report_page(flight: PageFlight, request: Request, user: PageUser, db: DB) -> Response:
    """A finished flight's report as a web page."""
    if not _done(flight):
        return RedirectResponse(f"/flights/{flight.id}", status_code=303)
    ctx = _report_context(request, flight, _lang(request), pdf=False)
    return _render(request, "report.html", ctx, user=user)


@router.get("/flights/{flight_id}/report.pdf")
def report_pdf(
    flight: PageFlight,
    request: Request,
    user: PageUser,
    db: DB,
    lang: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """A finished flight's report as a PDF download."""
    if not _done(flight):
        return RedirectResponse(f"/flights/{flight.id}", status_code=303)
    language = pick_language(lang or request.cookies.get(LANG_COOKIE))
    t = Translator(language)
    ctx = {
        "request": request,
        "t": t,
        "lang": language,
        "dir": t.dir,
        "user": user,
        **_report_context(request, flight, language, pdf=True),
    }
    html_text = templates.get_template("report.html").render(ctx)
    pdf = rp.render_pdf(html_text)
    name = f"khet-flight-{flight.id}-{language}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- comparing two flights ---------------------------------------------------------------------


@router.get("/fields/{field_id}/compare", response_class=HTMLResponse)
def compare_page(
    field: PageField,
    request: Request,
    user: PageUser,
    db: DB,
    a: Annotated[str | None, Query(max_length=32)] = None,
    b: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Two finished flights of a field side by side, with what changed. A flight named that is
    not a finished flight of this field is "not found" (another flight was shown in its place)."""
    t = Translator(_lang(request))
    done = [
        f
        for f in db.scalars(select(Flight).where(Flight.field_id == field.id).order_by(Flight.id))
        if _done(f)
    ]
    by_id = {f.id: f for f in done}
    named = [_page_id(x, user) if x is not None else None for x in (a, b)]
    if any(i is not None and i not in by_id for i in named):
        raise _PageNotFound(user)
    defaults = [f.id for f in done[-2:]] if len(done) >= 2 else [0, 0]
    ia, ib = (i if i is not None else d for i, d in zip(named, defaults, strict=True))
    pair = [by_id[ia], by_id[ib]] if ia in by_id and ib in by_id else []
    rows: list[dict[str, Any]] = []
    sides: list[dict[str, Any]] = []
    same_units = True
    if pair:
        units = [rp.area_unit(f.summary) for f in pair]
        same_units = units[0] == units[1] == "ha"
        names: list[str] = []
        per = []
        for f in pair:
            d = {
                c["name"]: c
                for c in rp.dicts(rp.mapping(f.summary).get("classes"))
                if rp.text(c.get("name"))
            }
            per.append(d)
            names += [n for n in d if n not in names]
        # One unit for the table's area columns, chosen by its largest area.
        scale = rp.area_scale(rp.num(c.get("area_ha")) for d in per for c in d.values())
        for n in names:
            ca, cb = per[0].get(n) or {}, per[1].get(n) or {}
            if same_units:
                va, vb = rp.num(ca.get("area_ha"), 0.0), rp.num(cb.get("area_ha"), 0.0)
                delta = round(vb - va, 6)
                fa = rp.fmt_area(va, "ha", t, scale=scale)
                fb = rp.fmt_area(vb, "ha", t, scale=scale)
                sign = "+" if delta > 0 else "−" if delta < 0 else ""
                fd = sign + rp.fmt_area(abs(delta), "ha", t, scale=scale)
            else:
                va, vb = rp.num(ca.get("share"), 0.0), rp.num(cb.get("share"), 0.0)
                delta = round(vb - va, 6)
                fa, fb = rp.pct(va), rp.pct(vb)
                fd = ("+" if delta > 0 else "−" if delta < 0 else "") + rp.pct(abs(delta))
            color = rp.color(ca.get("color"), rp.color(cb.get("color")))
            # More weeds is worse, more crop is better; other classes are neither.
            trend = {"weed": -1, "crop": 1}.get(n, 0) * (1 if delta > 0 else -1 if delta < 0 else 0)
            rows.append(
                {
                    "name": n,
                    "label": t.name("cls", n),
                    "color": color,
                    "a": fa,
                    "b": fb,
                    "delta": fd,
                    "better": trend > 0,
                    "worse": trend < 0,
                }
            )
        for f in pair:
            results = _results_dir(f)
            sides.append(
                {
                    "flight": f,
                    "date": rp.flight_date(f),
                    "georef": _on_a_map(rp.mapping(f.summary), results),
                    "imagery": bool((f.imagery or {}).get("tileable")),
                }
            )
    uncalibrated = [f"#{f.id}" for f in pair if rp.radiometry_status(f.summary) == "uncalibrated"]
    config = {
        "sides": [
            {"flight": s["flight"].id, "georeferenced": s["georef"], "imagery": s["imagery"]}
            for s in sides
        ]
    }
    return _render(
        request,
        "compare.html",
        {
            "field": field,
            "done": done,
            "a": ia,
            "b": ib,
            "pair": pair,
            "rows": rows,
            "same_units": same_units,
            "uncalibrated": ", ".join(uncalibrated),
            "sides": sides,
            "config": config,
            "legend": map_layers(pair[1], t)[0]["legend"] if pair else [],
        },
        user=user,
    )


# --- the account: password, sessions, tokens ---------------------------------------------------


def _account(
    request: Request,
    user: User,
    db: Session,
    message: str | None = None,
    error: bool = False,
    status: int = 200,
) -> Response:
    return _render(
        request,
        "account.html",
        {
            "sessions": list(
                db.scalars(
                    select(WebSession)
                    .where(WebSession.user_id == user.id)
                    .order_by(WebSession.id.desc())
                )
            ),
            "current": auth.current_session_id(db, request),
            "tokens": list(
                db.scalars(
                    select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
                )
            ),
            "message": message,
            "error": error,
        },
        status=status,
        user=user,
    )


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, user: PageUser, db: DB) -> Response:
    """The user's account: password, sessions and API tokens."""
    t = Translator(_lang(request))
    done = {"password": "password_changed", "session": "session_ended", "token": "token_revoked"}
    key = done.get(request.query_params.get("done") or "")
    return _account(request, user, db, t(key) if key else None)


@router.post("/account/password")
async def account_password(request: Request, user: PageUser, db: DB) -> Response:
    """Change the password from the account page."""
    form = await request.form()
    current = str(form.get("current") or "")[:256]
    new = str(form.get("new") or "")[:256]
    try:
        try:
            await run_in_threadpool(auth.login_user, db, user.email, current, request)
        except AuthError:  # the form asks for no email: "wrong email or password" misled
            t = Translator(_lang(request))
            return _account(request, user, db, t("current_password_wrong"), error=True, status=400)
        keep = auth.current_session_id(db, request)
        await run_in_threadpool(auth.set_password, db, user, new, keep)
    except KhetError as e:
        return _account(request, user, db, e.message, error=True, status=status_for(e))
    return RedirectResponse("/account?done=password", status_code=303)


def _delete_own(db: Session, user: User, model, row_id: int) -> None:
    """Delete the user's own session or token; anyone else's is "not found"."""
    row = db.get(model, row_id) if 0 < row_id <= MAX_ID else None
    if row is None or row.user_id != user.id:
        raise _PageNotFound(user)
    db.delete(row)
    db.commit()


@router.post("/account/sessions/{session_id}/end")
def account_end_session(session_id: int, user: PageUser, db: DB) -> Response:
    """End one of the user's sessions from the account page."""
    _delete_own(db, user, WebSession, session_id)
    return RedirectResponse("/account?done=session", status_code=303)


@router.post("/account/tokens/{token_id}/revoke")
def account_revoke_token(token_id: int, user: PageUser, db: DB) -> Response:
    """Revoke one of the user's API tokens from the account page."""
    _delete_own(db, user, ApiToken, token_id)
    return RedirectResponse("/account?done=token", status_code=303)
