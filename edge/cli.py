"""`khet edge run | watch | sync`: the offline runner for field devices.

Imports stay light (no torch, FastAPI or SQLAlchemy): a device installs only the core dependencies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """The `khet edge` commands (run, watch, sync, ...) on the main parser."""
    edge = sub.add_parser(
        "edge",
        help="offline runner for field devices: run, watch a folder, sync results",
        description="Analyze imagery on a device with no network, then send the results.",
    )
    esub = edge.add_subparsers(dest="edge_command", metavar="COMMAND", parser_class=type(edge))

    run = esub.add_parser(
        "run",
        help="analyze a file, a capture or a folder of captures",
        description="Analyze each capture once into OUT/<capture>/; run again to resume.",
    )
    run.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="image file(s), the band files of a capture, or folders",
    )
    _common(run)
    run.add_argument("--retry-failed", action="store_true", help="analyze failed captures again")
    run.set_defaults(func=cmd_run)

    watch = esub.add_parser(
        "watch",
        help="watch a folder (an SD card) and analyze each new capture once",
        description="Poll FOLDER; analyze a capture once its files are unchanged for --settle s.",
    )
    watch.add_argument("folder", type=Path, metavar="FOLDER")
    _common(watch)
    watch.add_argument(
        "--interval", type=_seconds(above=0), default=5.0, help="seconds between looks (5)"
    )
    watch.add_argument(
        "--settle",
        type=_seconds(),
        default=10.0,
        help="seconds a capture's files must stay unchanged before analysis (10)",
    )
    watch.add_argument("--server", help="service URL: sync results when the network is up")
    watch.add_argument("--token", help="API token for --server")
    watch.add_argument(
        "--sync-every", type=_seconds(above=0), default=60.0, help="seconds between syncs (60)"
    )
    watch.add_argument("--once", action="store_true", help="look once (after --settle) and stop")
    watch.set_defaults(func=cmd_watch)

    sync = esub.add_parser(
        "sync",
        help="upload waiting results to the service as flights",
        description="Send every result in OUT's outbox; safe to interrupt and run again.",
    )
    sync.add_argument("-o", "--out", required=True, type=Path, help="the edge output folder")
    sync.add_argument("--server", required=True, help="service URL, e.g. https://khet.example.org")
    sync.add_argument("--token", required=True, help="API token (khet token create)")
    sync.add_argument("--field", help="field id for results not given one at analysis")
    sync.add_argument(
        "--chunk-kb", type=_positive_int, default=1024, help="upload chunk size (1024 KiB)"
    )
    sync.set_defaults(func=cmd_sync)
    edge.set_defaults(func=lambda args: (edge.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder (and edge state)")
    p.add_argument("--bands", help="band names in file order, e.g. red,green,blue,nir")
    p.add_argument(
        "--gsd",
        type=float,
        help="ground sample distance, metres per pixel, for frames that cannot tell it (0.003)",
    )
    p.add_argument(
        "--crop",
        help="the field's crop, e.g. potato (every crop it grows: 'potato and maize'): a model "
        "that learned another crop is not used",
    )
    p.add_argument("--model", help="model bundle name or .onnx path (default: chosen by bands)")
    p.add_argument("--model-sha256", help="expected sha256 of --model (else the shipped manifest)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "int8"),
        default="auto",
        help="model precision (auto: what the model card says is better on a CPU)",
    )
    p.add_argument("--threads", type=int, help="inference threads (KHET_THREADS; 0 = all cores)")
    p.add_argument("--batch-size", type=int, help="tiles per batch (KHET_BATCH_SIZE)")
    p.add_argument("--gdal-cache-mb", type=int, help="GDAL block cache, MB (KHET_GDAL_CACHE_MB)")
    p.add_argument(
        "--max-memory",
        type=int,
        metavar="MB",
        help="memory ceiling: sets batch size and GDAL cache, stops a capture over it",
    )
    p.add_argument("--field", help="field id the results belong to (used by sync)")
    p.add_argument("--with-imagery", action="store_true", help="also upload the imagery on sync")
    p.add_argument(
        "--mosaic",
        action="store_true",
        help="a folder of a flight's frames is mosaicked into one map (needs khet[mosaic])",
    )
    p.add_argument(
        "--spot-spray",
        action="store_true",
        help="also make a spot-spray map of each capture (Shapefile and ISO-XML TaskData in "
        "OUT/<capture>/management/), offline",
    )
    p.add_argument("--spray-margin", type=float, default=0.5, help="metres around weeds (0.5)")
    p.add_argument("--spray-min-patch", type=float, default=0.5, help="smallest patch, m² (0.5)")
    p.add_argument("--spray-rate", type=float, default=100.0, help="spray rate (100)")
    p.add_argument("--spray-unit", default="L/ha", help="L/ha or kg/ha (L/ha)")
    p.add_argument(
        "--spray-target",
        choices=("weed", "vegetation"),
        default="weed",
        help="spray weeds (default) or every plant",
    )


def _seconds(above: float | None = None):
    """An argparse type: a finite number of seconds, at least 0 (or more than `above`)."""

    def parse(text: str) -> float:
        import math

        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(v) or v < 0 or (above is not None and v <= above):
            least = "more than 0" if above is not None else "0 or more"
            raise argparse.ArgumentTypeError(f"give {least} seconds (got {text})")
        return v

    return parse


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"give 1 or more (got {text})")
    return v


def _server(url: str) -> str:
    """The service's address, checked before any network is tried: a typing error is not an
    outage."""
    from urllib.parse import urlsplit

    from khet.errors import KhetError

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise KhetError(
            f"--server {url} is not a web address: give it as http:// or https:// and the host, "
            "e.g. https://khet.example.org."
        )
    return url


def _bands(text: str | None) -> list[str] | None:
    from khet.errors import KhetError

    if not text:
        return None
    names = [b.strip() for b in text.split(",")]
    if not all(names):
        raise KhetError(
            f"--bands {text!r} leaves a band without a name: give one per band in file order "
            "(- for a band to ignore), e.g. red,green,blue."
        )
    return names


def _options(args: argparse.Namespace):
    from khet.errors import KhetError

    from .runner import EdgeOptions

    for name in ("threads", "batch_size", "gdal_cache_mb", "max_memory"):
        v = getattr(args, name)
        if v is not None and v < (0 if name == "threads" else 1):
            raise KhetError(f"--{name.replace('_', '-')} must be a positive number.")
    return EdgeOptions(
        out=args.out,
        bands=_bands(args.bands),
        model=args.model,
        model_sha256=args.model_sha256,
        precision=args.precision,
        threads=args.threads,
        batch_size=args.batch_size,
        gdal_cache_mb=args.gdal_cache_mb,
        max_memory_mb=args.max_memory,
        field=args.field,
        with_imagery=args.with_imagery,
        retry_failed=getattr(args, "retry_failed", False),
        mosaic=args.mosaic,
        gsd=_gsd(args.gsd),
        crop=_crop(args.crop),
        spot_spray=_spray(args),
    )


def _crop(value: str | None) -> str | None:
    from khet.vision.crops import check_crop

    return check_crop(value)  # before any capture is analysed


def _gsd(value: float | None) -> float | None:
    from khet.vision.gsd import check_stated

    check_stated(value, "--gsd")  # before any capture is analysed
    return value


def _spray(args: argparse.Namespace) -> dict | None:
    """The spot-spray settings, checked before any capture is analysed."""
    if not args.spot_spray:
        return None
    from khet.vision.prescription import RATE_UNITS, check_rate

    from khet.errors import KhetError

    if args.spray_unit not in RATE_UNITS:
        raise KhetError(f"--spray-unit must be {' or '.join(RATE_UNITS)}.")
    unit = RATE_UNITS[args.spray_unit]
    if not (0 <= args.spray_margin <= 20):
        raise KhetError("--spray-margin must be 0 to 20 metres.")
    if not (0 <= args.spray_min_patch <= 10000):
        raise KhetError("--spray-min-patch must be 0 to 10000 square metres.")
    if not (0 <= args.spray_rate <= unit.maximum):
        raise KhetError(f"--spray-rate must be 0 to {unit.maximum:g} {unit.name}.")
    check_rate(args.spray_rate, args.spray_unit, "--spray-rate")  # in the TaskData's steps
    return {
        "margin_m": args.spray_margin,
        "min_patch_m2": args.spray_min_patch,
        "rate": args.spray_rate,
        "unit": args.spray_unit,
        "target": args.spray_target,
    }


def cmd_run(args: argparse.Namespace) -> int:
    """`khet edge run`: analyze every new capture on the card once, then exit."""
    from .runner import EdgeRunner

    with EdgeRunner(_options(args)) as runner:
        print(runner.describe(), file=sys.stderr, flush=True)
        counts = runner.run(args.inputs)
        print(
            f"{counts['done']} analyzed, {counts['failed']} failed, {counts['skipped']} skipped; "
            f"peak memory {runner.peak_mb:.0f} MB",
            file=sys.stderr,
        )
    return 2 if counts["failed"] else 0


def cmd_watch(args: argparse.Namespace) -> int:
    """`khet edge watch`: analyze captures as they appear, and sync when the network is back."""
    from khet.errors import KhetError

    from .runner import EdgeRunner

    if bool(args.server) != bool(args.token):
        raise KhetError("Give both --server and --token to sync while watching, or neither.")
    if args.server:
        _server(args.server)
    if not args.folder.is_dir():
        if args.once or args.folder.exists():
            what = "is not a folder" if args.folder.exists() else "does not exist"
            raise KhetError(f"{args.folder} {what}: give the folder the captures arrive in.")
        print(
            f"khet: {args.folder} does not exist yet (a card not inserted?): waiting for it.",
            file=sys.stderr,
            flush=True,
        )
    with EdgeRunner(_options(args)) as runner:
        print(runner.describe(), file=sys.stderr, flush=True)
        sync = None
        if args.server:
            from .outbox import sync as do_sync

            def sync() -> None:
                report = do_sync(runner.journal, args.server, args.token, args.field, log=print)
                if report.synced:
                    print(report.line(), flush=True)

        polls = {"n": 0}

        def stop() -> bool:
            polls["n"] += 1
            return args.once and polls["n"] >= 2

        interval = args.settle if args.once else args.interval
        try:
            counts = runner.watch(
                args.folder,
                interval=interval,
                settle=args.settle,
                sync=sync,
                sync_every=args.sync_every,
                stop=stop,
            )
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
            return 0
    return 2 if counts["failed"] else 0


def cmd_sync(args: argparse.Namespace) -> int:
    """`khet edge sync`: upload the results waiting in the outbox to the server."""
    from khet.errors import KhetError

    from .journal import STATE_DIR, Journal
    from .outbox import sync

    _server(args.server)
    if not (args.out / STATE_DIR).is_dir():
        raise KhetError(f"{args.out} is not an edge output folder (run `khet edge run` first).")
    with Journal(args.out) as journal:
        if journal.lost:
            print(
                f"khet: warning: the edge journal in {args.out} was {journal.lost}: run "
                "`khet edge run` on the same inputs first; it rebuilds the journal from the "
                "finished folders (analyzing nothing again), then sync.",
                file=sys.stderr,
            )
        report = sync(
            journal,
            args.server,
            args.token,
            args.field,
            chunk=args.chunk_kb * 1024,
            log=print,
        )
    print(report.line())
    for name, msg in report.failed.items():
        print(f"khet: {name}: {msg}", file=sys.stderr)
    return 2 if report.failed else 0
