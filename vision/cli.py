"""`khet analyze`: one capture (or a flight, mosaicked first) in, a field map out;
`khet mosaic`: a flight's frames in, one georeferenced orthomosaic out."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

from khet.vision.units import fmt_amount, fmt_area, fmt_rate


def register(sub: argparse._SubParsersAction) -> None:
    """Add `khet analyze` and `khet mosaic` to the parser."""
    p = sub.add_parser(
        "analyze",
        help="turn drone imagery into a field map",
        description=(
            "Analyze one capture: a GeoTIFF/COG orthomosaic, a drone JPEG/PNG, the band files of "
            "a multispectral capture, or a folder holding one capture. A folder (or list) of a "
            "flight's frames is mosaicked first (see `khet mosaic`) and kept as ortho.tif. "
            "Writes classes.tif, vigour.tif, indices/*.tif, zones.geojson, preview.png and "
            "summary.json to OUT."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file(s) or a folder")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--bands", help="band names in file order, e.g. red,green,blue,nir (- to skip one)"
    )
    p.add_argument(
        "--model",
        help="model bundle name or .onnx path (default: the one whose bands and validated "
        "ground sample distance fit the image)",
    )
    p.add_argument(
        "--gsd",
        type=float,
        help="ground sample distance in metres per pixel, e.g. 0.03 for 3 cm (default: from "
        "the file's CRS or the camera's height and lens)",
    )
    p.add_argument(
        "--crop",
        help="the field's crop, e.g. potato (every crop it grows: 'potato and maize'): a model "
        "that learned another crop is not used "
        "(default: not stated; the map then says which crop its model learned)",
    )
    p.add_argument("--tile-size", type=int, help="tile size in pixels (default: the model's)")
    p.add_argument("--overlap", type=int, help="tile overlap in pixels (default: the model's)")
    p.add_argument(
        "--boundary", type=Path, help="GeoJSON of the field boundary (EPSG:4326) to clip to"
    )
    p.add_argument("--title", help="title for the preview and summary")
    p.add_argument(
        "--panel",
        nargs="+",
        type=Path,
        metavar="PANEL",
        help="band files (or folder) of the reflectance panel capture taken for this flight",
    )
    p.add_argument(
        "--panel-reflectance",
        metavar="VALUES",
        help="the panel's reflectance from its calibration sheet: one value for all bands, or "
        "blue=0.67,green=0.69,red=0.68,nir=0.61,rededge=0.67 (default: from the panel's QR code)",
    )
    p.add_argument(
        "--calibration",
        choices=["auto", "panel+dls", "panel", "dls", "none"],
        default="auto",
        help="how band files become reflectance: auto (panel and light sensor, whichever there "
        "is), one of them only, or none (raw numbers)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=run)

    m = sub.add_parser(
        "mosaic",
        help="mosaic a flight's frames into one georeferenced orthomosaic",
        description=(
            "Place a flight's overlapping frames (drone JPEGs with GPS, or multispectral "
            "captures) by structure from motion and write one Cloud-Optimized GeoTIFF in the "
            "local UTM zone. Needs pycolmap (pip install 'khet[mosaic]')."
        ),
    )
    m.add_argument("inputs", nargs="+", metavar="FRAMES", help="a folder of frames, or the frames")
    m.add_argument("-o", "--out", required=True, type=Path, help="the GeoTIFF to write")
    m.add_argument("--bands", help="band names in file order, e.g. nir,green,blue")
    m.add_argument(
        "--resolution", type=float, help="pixel size in metres (default: the frames' own)"
    )
    m.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    m.set_defaults(func=run_mosaic)
    _register_management(sub)


def _register_management(sub: argparse._SubParsersAction) -> None:
    """`khet zones` and `khet prescription rate|spot` on an analysed folder."""
    z = sub.add_parser(
        "zones",
        help="management zones of a field from an analysed folder",
        description=(
            "Split a field into 2-7 management zones from its vegetation index (several "
            "analysed flights of the same field: their indices together), spatially coherent "
            "and no smaller than a minimum area. Writes management/zones.geojson (EPSG:4326), "
            "zones.tif (COG) and zones.json (the zone table and how the zones were made) into "
            "the first folder."
        ),
    )
    z.add_argument("folders", nargs="+", type=Path, metavar="RESULTS", help="analysed folder(s)")
    z.add_argument("-n", "--zones", type=int, help="number of zones, 2-7 (default: chosen)")
    z.add_argument("--index", help="index to zone on, e.g. ndvi (default: the vigour index)")
    z.add_argument("--method", choices=["kmeans", "natural-breaks"], default="kmeans")
    z.add_argument(
        "--min-zone-ha",
        type=float,
        help="smallest zone patch in hectares (default: 2%% of the mapped area)",
    )
    z.add_argument(
        "--smooth", type=int, default=1, help="smooth over this many cells around each (0-10)"
    )
    z.add_argument("--boundary", type=Path, help="field boundary GeoJSON (EPSG:4326) to clip to")
    z.add_argument("--json", action="store_true", help="print zones.json on stdout")
    z.set_defaults(func=run_zones)

    p = sub.add_parser(
        "prescription",
        help="variable-rate or spot-spray prescription from an analysed folder",
        description=(
            "Write a prescription a machine can load: GeoJSON, an ESRI Shapefile zip and ISO "
            "11783-10 TaskData, in EPSG:4326, into the folder's management/ subfolder."
        ),
    )
    ps = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    r = ps.add_parser(
        "rate",
        help="a rate per management zone (make zones first with `khet zones`)",
        description="A rate per zone: --rates one per zone (zone 1 has the lowest index), or "
        "--base-rate with --adjust PCT (+PCT in the highest zone, -PCT in the lowest).",
    )
    r.add_argument("folder", type=Path, metavar="RESULTS")
    r.add_argument("--rates", help="comma-separated rates, zone 1 first, e.g. 140,120,100")
    r.add_argument("--base-rate", type=float, help="the rate of an average zone")
    r.add_argument(
        "--adjust",
        type=float,
        default=0.0,
        help="percent added in the highest-index zone and taken off in the lowest (negative: "
        "the weak zones get more)",
    )
    r.add_argument("--unit", default="kg/ha", help="kg/ha or L/ha (default kg/ha)")
    r.add_argument("--product", default="Nitrogen", help="product name (default Nitrogen)")
    r.add_argument("--json", action="store_true", help="print rate.json on stdout")
    r.set_defaults(func=run_rate)
    s = ps.add_parser(
        "spot",
        help="spray polygons from the weed map",
        description="The map's weed cells as spray polygons: patches under --min-patch m² left "
        "out, buffered by --margin metres, merged and clipped to the field; with the share "
        "of the field sprayed against blanket spraying.",
    )
    s.add_argument("folder", type=Path, metavar="RESULTS")
    s.add_argument("--margin", type=float, default=0.5, help="buffer in metres (default 0.5)")
    s.add_argument(
        "--min-patch", type=float, default=0.5, help="smallest weed patch in m² (default 0.5)"
    )
    s.add_argument("--rate", type=float, default=100.0, help="spray rate (default 100)")
    s.add_argument("--unit", default="L/ha", help="L/ha or kg/ha (default L/ha)")
    s.add_argument("--product", default="Herbicide", help="product name (default Herbicide)")
    s.add_argument(
        "--target",
        choices=["weed", "vegetation"],
        default="weed",
        help="spray weeds (default) or every plant (a burn-down before sowing)",
    )
    s.add_argument(
        "--min-cover",
        type=float,
        default=1.0,
        help="also spray cells whose weed (or plant) cover is at least this percent, where the "
        "map records cover (default 1)",
    )
    s.add_argument("--boundary", type=Path, help="field boundary GeoJSON (EPSG:4326)")
    s.add_argument("--json", action="store_true", help="print spot.json on stdout")
    s.set_defaults(func=run_spot)


def _boundary_arg(path: Path | None) -> dict | None:
    return None if path is None else _read_boundary(path)


def _print(result: dict, args: argparse.Namespace, line: str) -> int:
    if args.json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(line)
        for w in result.get("warnings", []):
            print(f"  note: {w}", file=sys.stderr)
    return 0


def run_zones(args: argparse.Namespace) -> int:
    """`khet zones`: management zones of an analysed folder, one line (or zones.json)."""
    from khet.vision.prescription import make_zones

    res = make_zones(
        args.folders,
        n_zones=args.zones,
        index=args.index,
        method=args.method,
        min_zone_ha=args.min_zone_ha,
        smooth=args.smooth,
        boundary=_boundary_arg(args.boundary),
    )
    parts = [
        f"zone {z['zone']} {fmt_area(z['area_ha'])} ({res['index_title']} {z['index_mean']:.2f})"
        for z in res["zones"]
    ]
    line = (
        f"{args.folders[0] / res['files']['geojson']}: {len(res['zones'])} "
        f"{'zone' if len(res['zones']) == 1 else 'zones'}, "
        f"{', '.join(parts)} — {res['method']['name']}"
    )
    return _print(res, args, line)


def run_rate(args: argparse.Namespace) -> int:
    """`khet prescription rate`: a rate per zone, exported for machines."""
    from khet.vision.prescription import variable_rate

    from khet.errors import InputError

    rates = None
    if args.rates is not None:
        try:
            rates = [float(x) for x in args.rates.split(",")]
        except ValueError:
            raise InputError(
                f"--rates takes numbers separated by commas, not {args.rates!r}."
            ) from None
    res = variable_rate(
        args.folder,
        rates=rates,
        base_rate=args.base_rate,
        adjust_pct=args.adjust,
        unit=args.unit,
        product=args.product,
    )
    rates_txt = ", ".join(f"zone {z['zone']} {fmt_rate(z['rate'])}" for z in res["zones"])
    line = (
        f"{args.folder / res['files']['shapefile']}: {res['product']} {rates_txt} {res['unit']}; "
        f"total {fmt_amount(res['total'])} {res['total_unit']} over {fmt_area(res['area_ha'])} "
        f"(also {res['files']['taskdata']})"
    )
    return _print(res, args, line)


def run_spot(args: argparse.Namespace) -> int:
    """`khet prescription spot`: spray polygons from the weed map, with the saving."""
    from khet.vision.prescription import spot_spray

    res = spot_spray(
        args.folder,
        margin_m=args.margin,
        min_patch_m2=args.min_patch,
        rate=args.rate,
        unit=args.unit,
        product=args.product,
        target=args.target,
        min_cover_pct=args.min_cover,
        boundary=_boundary_arg(args.boundary),
    )
    line = (
        f"{args.folder / res['files']['shapefile']}: spray {fmt_area(res['sprayed_ha'])} of "
        f"{fmt_area(res['field_ha'])} ({res['sprayed_share']:.1%} of the field, saving "
        f"{res['saving_share']:.1%} against blanket spraying); {fmt_amount(res['total'])} "
        f"{res['total_unit']} of {res['product']} instead of {fmt_amount(res['blanket_total'])}"
    )
    return _print(res, args, line)


def _progress(enabled: bool, what: str = "analyzing"):
    """A progress bar (None when not on a terminal) and its update and stage functions."""
    if not enabled:
        return None, None, None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    task = bar.add_task(what, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    def stage(text: str) -> None:
        bar.update(task, description=text)

    return bar, update, stage


@contextlib.contextmanager
def _stop_cleanly(sfm: bool = False):
    """SIGTERM (`kill`, a service manager stopping the job) ends a run as Ctrl-C does: its
    working and staging folders removed, "interrupted", exit 130; it left a mosaic's 45 MB
    working folder and a stack dump. With `sfm` (a mosaic to make), pycolmap is imported first:
    its logging library takes SIGTERM for a crash when imported (a stack dump, nothing tidied),
    and the handler set after it is the one that holds."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if sfm:
        with contextlib.suppress(ImportError):  # without it the mosaic says what to install
            import pycolmap  # noqa: F401

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run_mosaic(args: argparse.Namespace) -> int:
    """`khet mosaic`: mosaic a flight's frames into an orthomosaic GeoTIFF."""
    from khet.vision.mosaic import mosaic

    if args.out.suffix.lower() not in {".tif", ".tiff"}:
        from khet.errors import KhetError

        raise KhetError(f"-o names the GeoTIFF to write (e.g. ortho.tif), not {args.out.name}.")
    bar, update, stage = _progress(sys.stderr.isatty() and not args.json, "mosaicking")
    if bar:
        bar.start()

    def on_stage(text: str, frac: float) -> None:
        if stage:
            stage(text)
            update(int(frac * 1000), 1000)

    try:
        with _stop_cleanly(sfm=True):
            summary = mosaic(
                args.inputs,
                args.out,
                bands=args.bands.split(",") if args.bands else None,
                resolution=args.resolution,
                stage=on_stage,
            )
    finally:
        if bar:
            bar.stop()
    return _report(summary, args, mosaic_line)


def mosaic_line(s: dict, out: Path) -> str:
    """The one line `khet mosaic` prints about the orthomosaic it wrote."""
    left = f", {s['left_out']} left out (see --json)" if s["left_out"] else ""
    gps = (
        f", {s['placed_by_gps_attitude']} by GPS and attitude"
        if s["placed_by_gps_attitude"]
        else ""
    )
    return (
        f"{out}: {fmt_area(s['covered_ha'])} at {s['pixel_size_m'] * 100:.1f} cm/px ({s['crs']}); "
        f"{s['placed_by_sfm']} of {s['frames']} frames placed{gps}{left}; "
        f"GPS residual {s['georeference_residual_m']['median']:.1f} m"
    )


def run(args: argparse.Namespace) -> int:
    """`khet analyze`: imagery to a field map."""
    from khet.vision import radiometry
    from khet.vision.flight import is_flight
    from khet.vision.pipeline import analyze

    clip = _boundary_arg(args.boundary)
    bands = [b for b in args.bands.split(",")] if args.bands else None
    calibration = radiometry.Options(
        panel=tuple(args.panel or ()),
        panel_reflectance=radiometry.parse_panel_reflectance(args.panel_reflectance)
        if args.panel_reflectance
        else None,
        method=args.calibration,
    )
    bar, update, stage = _progress(sys.stderr.isatty() and not args.json)
    if bar:
        bar.start()
    try:
        with _stop_cleanly(sfm=is_flight(args.inputs)):
            summary = analyze(
                args.inputs,
                args.out,
                bands=bands,
                model=args.model,
                tile_size=args.tile_size,
                overlap=args.overlap,
                clip=clip,
                progress=update,
                title=args.title,
                stage=stage,
                gsd=args.gsd,
                calibration=calibration,
                crop=args.crop,
            )
    finally:
        if bar:
            bar.stop()
    return _report(summary, args, one_line)


NOTES_SHOWN = 5  # the summary's first warnings said on stderr after the one line


def _report(summary: dict, args: argparse.Namespace, line) -> int:
    """The summary as JSON on stdout (--json), else one line for a person and the summary's
    warnings (the first few) as notes on stderr."""
    if args.json:
        json.dump(summary, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(line(summary, args.out))
        warnings = summary.get("warnings") or []
        for w in warnings[:NOTES_SHOWN]:
            print(f"  note: {w}", file=sys.stderr)
        if len(warnings) > NOTES_SHOWN:
            print(f"  ({len(warnings) - NOTES_SHOWN} more in summary.json)", file=sys.stderr)
    return 0


def one_line(summary: dict, out: Path) -> str:
    """The result in one line: hectares (or shares) per class, weak crop, how it was made."""
    from khet.vision.gsd import describe as describe_gsd

    unit = summary["area_unit"]
    parts = []
    for c in summary["classes"]:
        if unit == "ha":
            parts.append(f"{c['name']} {fmt_area(c['area_ha'])} ({c['share']:.0%})")
        else:
            parts.append(f"{c['name']} {c['share']:.0%}")
    # The class areas above count whole map cells (a cell whose plants are mostly weed is a weed
    # cell); weed pressure, what a farmer acts on, is the share of the area weeds themselves cover.
    weed = (summary.get("cover") or {}).get("weed")
    pressure = f"; weeds cover {weed:.1%} of the area" if weed is not None else ""
    low = next((v for v in summary["vigour"]["levels"] if v["name"] == "low"), None)
    # Vigour is judged over the crop cells, or over the vegetation where crop is not told apart.
    plants = "crop" if any(c["name"] == "crop" for c in summary["classes"]) else "vegetation"
    vig = (
        f"; low-vigour {plants} {low['share_of_crop']:.0%}"
        if low and summary["vigour"]["index"]
        else ""
    )
    warn = (
        f" [{len(summary['warnings'])} warning(s) in summary.json]" if summary["warnings"] else ""
    )
    method = summary.get("method", "model")
    model = summary.get("model") or {}
    learned = f" ({', '.join(model['crops'])})" if model.get("crops") else ""
    how = {
        "model": f"model {model.get('name')}{learned}",
        "rows": "crop rows",
        "index": "vegetation index only (crop and weed not told apart)",
    }.get(method, method)
    gsd = (summary.get("gsd") or {}).get("metres")
    at = f" at {describe_gsd(gsd)}/px" if gsd else " (GSD unknown)"
    radiometry = summary.get("radiometry") or {}
    if radiometry.get("calibrated") is False:
        values = "raw numbers" if radiometry.get("values") == "raw" else "radiance"
        cal = f"; UNCALIBRATED indices ({values}, not reflectance)"
    elif radiometry.get("calibrated"):
        cal = f"; reflectance ({radiometry.get('method')})"
    else:
        cal = ""
    return f"{out}: {', '.join(parts)}{pressure}{vig}{cal} — {how}{at}{warn}"


def _read_boundary(path: Path) -> dict:
    """The field boundary in a GeoJSON file as one (Multi)Polygon geometry in EPSG:4326 (see
    maps.boundary_geometry); InputError naming the file when it cannot be read or holds no
    usable polygon. A repair that keeps the field's area is said on stderr."""
    from khet.vision.maps import boundary_geometry

    from khet.errors import InputError

    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise InputError(f"Cannot read the boundary file {path} ({e.strerror or e}).") from None
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, nested past reason
        raise InputError(f"The boundary file {path} is not GeoJSON ({e}).") from None
    notes: list[str] = []
    try:
        geometry = boundary_geometry(data, notes)
    except InputError as e:
        raise InputError(f"{e.message} (in {path})") from None
    for note in notes:
        print(f"  note: {note}", file=sys.stderr)
    return geometry
