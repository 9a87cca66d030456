"""The one path from drone imagery to a field map: `analyze()`.

`khet analyze`, the service's worker and the edge runner all call this function.

    Scene ─► plan (method, GSD) ─► grid ─► strips of windows ─► labeller ─► cells ─► outputs
             (plan.py)             (grid.py)  read at working GSD  (labelling.py)   (maps.py)
                                                  └─► indices per pixel (scratch raster) + per cell

The plan decides how the crop/weed split is made (a model at its own ground sample distance, crop
rows, or vegetation only) and the working GSD the scene is read at: resampled while reading, so
memory never holds more than a strip per worker, whatever the raster's size. One worker per core
takes the next strip into its own reused buffers under a lock, shrinks the strip's index bands
(computed, once a row of windows is complete, into a scratch raster) and adds it to the preview,
then labels it (running the model) while another worker reads: reading, index work and inference
overlap.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from affine import Affine
from khet.vision import crops as crops_
from khet.vision import gsd as gsd_
from khet.vision import indices as vi
from khet.vision import maps, memory, products, radiometry
from khet.vision.flight import is_flight
from khet.vision.grid import MIN_VALID, NODATA, Grid
from khet.vision.labelling import Buffers, Cells, Labeller, Strip, labeller_for
from khet.vision.outputs import Staging, cog_from, open_scratch_raster, staging, write_json
from khet.vision.plan import Plan, make_plan
from khet.vision.scene import Scene, is_all_valid, open_scene
from khet.vision.summary import SCHEMA_VERSION, Summary, Text
from pydantic import TypeAdapter, ValidationError
from rasterio.windows import Window

from khet import __version__
from khet.errors import InputError, KhetError
from khet.settings import Settings, get_settings

Progress = Callable[[int, int], None]

#: The tile sizes `analyze()` takes (working pixels per side of one model window). A bundle's own
#: tile size is what it was trained on; a larger window only costs memory (bands x tile x a
#: strip's width per worker), and past this no model Khet trains or ships is meant to run.
MIN_TILE, MAX_TILE = 16, 1024
#: What summary.json accepts as a title (checked before the analysis, not after it).
_TITLE: TypeAdapter[str | None] = TypeAdapter(Text | None)  # Summary.title


@dataclass
class CellMaps:
    """What the strips produced: the map's cells, per-cell index means and index statistics."""

    classes: np.ndarray  # rows x cols uint8, NODATA outside the data
    confidence: np.ndarray | None  # rows x cols uint8 percent (255: none); a model's maps only
    cover: np.ndarray | None  # rows x cols x classes uint8 percent; per-pixel methods only
    cell_index: np.ndarray  # rows x cols x indices float32, NaN where none
    analysed: int  # cells with data
    skipped: int
    windows: int  # windows run through the model
    inference_seconds: float
    index_stats: list[maps.RunningStats]
    index_step: int
    index_paths: dict[str, Path]
    scratch_path: Path | None
    preview: maps.PreviewCanvas


def analyze(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    bands: Sequence[str] | None = None,
    model: str | Path | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    clip: dict | None = None,
    progress: Progress | None = None,
    settings: Settings | None = None,
    title: str | None = None,
    gsd: float | None = None,
    calibration: radiometry.Options | None = None,
    stage: Callable[[str], None] | None = None,
    crop: str | None = None,
) -> dict[str, Any]:
    """Turn one capture into a field map in `out_dir`; returns the summary (also summary.json).

    `clip` is a GeoJSON geometry in EPSG:4326 (a field boundary): cells outside it are nodata.
    `gsd` states the ground sample distance in metres per pixel (else from the file).
    `calibration` says how a multispectral capture becomes reflectance (default: the light
    sensor when the band files carry it; see radiometry.Options).
    A flight (two or more frames) is mosaicked first (vision/mosaic.py), then analysed as an
    orthomosaic, whose pixel size is its GSD; `stage` is told what that step is doing
    ("placing frame 37 of 167").
    `crop` is the field's crop (e.g. "potato"): a model that learned another crop is not used.
    Raises `KhetError` subclasses for anything the user can fix; writes nothing then.
    """
    check_tiling(tile_size, overlap)
    check_title(title)
    crop = crops_.check_crop(crop)
    if clip is not None:
        clip = maps.boundary_geometry(clip)
    settings = settings or get_settings()
    if is_flight(inputs):
        from khet.vision.mosaic import analyze_flight

        return analyze_flight(
            inputs, out_dir, analyze, bands=bands, progress=progress, stage=stage,
            settings=settings, model=model, tile_size=tile_size, overlap=overlap, clip=clip,
            title=title, crop=crop,
        )  # fmt: skip
    started = time.perf_counter()
    memory.bound_arenas()
    scene = open_scene(inputs, bands=bands, settings=settings, gsd=gsd, calibration=calibration)
    with scene:
        # One ONNX Runtime thread per inference thread, as many as cores (or KHET_THREADS).
        n_infer = settings.threads or os.cpu_count() or 1
        plan = make_plan(scene, settings.models_dir, model, tile_size, overlap, crop)
        if plan.bundle is not None:
            scene.require(list(plan.bundle.info.bands), f"Model {plan.bundle.info.name}")
        scene.warnings.extend(plan.warnings)
        _check_size(scene, plan)
        index_list = vi.available(scene.bands)
        clip_cells = maps.clip_mask(clip, scene, plan.grid, plan.zoom) if clip else None

        with staging(Path(out_dir)) as st:
            memory.release_free_memory()  # what the plan (the row search) freed
            result = _classify(scene, plan, index_list, st, settings, clip_cells, progress, n_infer)
            if result.analysed == 0:
                raise InputError(
                    "The image holds no usable pixels (all nodata, NaN, transparent or outside the "
                    "field boundary): nothing to analyze."
                )
            # The index COGs are compressed (GDAL releases the GIL, two at a time) while the
            # class maps, zones and preview are written: the cores have no idle tail.
            memory.release_free_memory()  # what the strip workers freed
            with ThreadPoolExecutor(max_workers=2) as pool:
                cogs = _index_cogs(pool, result, index_list)
                summary = maps.write_field_map(scene, plan, index_list, result, st, title=title)
                for job in cogs:
                    job.result()
            if result.scratch_path is not None:
                result.scratch_path.unlink()
            elapsed = time.perf_counter() - started
            summary["timing"] = {
                "seconds": round(elapsed, 2),
                "inference_seconds": round(result.inference_seconds, 2),
                "tiles": result.windows,
                "tiles_per_second": round(result.windows / max(elapsed, 1e-9), 1),
            }
            summary["crop"] = crop
            summary["khet_version"] = __version__
            summary["created"] = datetime.now(UTC).isoformat(timespec="seconds")
            summary["schema_version"] = SCHEMA_VERSION
            # The one definition of summary.json: what the pipeline writes is what readers check.
            typed = Summary.model_validate(summary).to_json()
            write_json(st.file(products.SUMMARY.path), typed)
            st.commit(replaces=products.REPLACED_BY_A_MAP)
    return typed


def check_tiling(tile_size: int | None, overlap: int | None) -> None:
    """InputError unless a stated tile size and overlap are in the range the pipeline takes:
    an even tile of MIN_TILE to MAX_TILE pixels, an even overlap smaller than the tile (None:
    the model's own). Checked before anything is read, so a typing error costs nothing."""
    if tile_size is not None and (
        isinstance(tile_size, bool)
        or not isinstance(tile_size, numbers.Integral)
        or not MIN_TILE <= tile_size <= MAX_TILE
        or tile_size % 2
    ):
        raise InputError(
            f"The tile size must be an even number of pixels from {MIN_TILE} to {MAX_TILE} "
            f"(got {tile_size}); leave out --tile-size to use the model's own."
        )
    top = (tile_size if tile_size is not None else MAX_TILE) - 2
    if overlap is not None and (
        isinstance(overlap, bool)
        or not isinstance(overlap, numbers.Integral)
        or not 0 <= overlap <= top
        or overlap % 2
    ):
        raise InputError(
            f"The tile overlap must be an even number of pixels from 0 to {top}, smaller than "
            f"the tile (got {overlap}); leave out --overlap to use the model's own."
        )


def check_title(title: str | None) -> None:
    """InputError unless `title` fits summary.json's title (text of at most 2000 characters),
    checked before the analysis so a long title is not refused after it."""
    try:
        _TITLE.validate_python(title)
    except ValidationError as e:
        limit = next((err.get("ctx", {}).get("max_length") for err in e.errors()), None)
        if limit is not None:
            raise InputError(
                f"The title is {len(title or ''):,} characters long; at most {limit:,} are "
                "accepted. Give a shorter --title."
            ) from None
        raise InputError("The title must be text.") from None


def _check_size(scene: Scene, plan: Plan) -> None:
    """An image smaller than a map cell has no cell with enough pixels to be mapped."""
    w, h = scene.working_size(plan.zoom)
    cell = plan.grid.cell
    if w * h < MIN_VALID * cell * cell:
        size = f"{scene.width} x {scene.height} pixels"
        if plan.zoom != 1.0:
            at = gsd_.describe(plan.working_gsd_m)
            size += f" ({w} x {h} at the {at} per pixel it is read at)"
        raise InputError(
            f"The image is {size}, smaller than one map cell ({cell} x {cell} pixels): too "
            "small to map."
        )


def model_batch(settings: Settings, segmentation: bool, tile: int) -> int:
    """Windows per model call: `batch_size`; for a per-pixel model as many pixels a batch as
    half that many 128 px tiles. ONNX Runtime's memory grows with a batch's pixels, and a
    segmentation network's activations are many per pixel: with khet-rgb-uav (256 px windows)
    on a 16384 px orthomosaic, 4 windows a call peaked at 446-456 MB against 523-531 MB for 8,
    at the same windows per second (a per-window cost that no longer falls past 2 windows)."""
    batch = max(1, settings.batch_size)
    return max(1, batch * 128 * 128 // (2 * tile * tile)) if segmentation else batch


def _index_step(grid: Grid, max_size: int) -> int:
    """Index maps are written at 1/step of the working resolution; step divides the cell."""
    need = max(1, math.ceil(max(grid.width, grid.height) / max_size))
    for k in range(need, grid.cell + 1):
        if grid.cell % k == 0:
            return k
    return grid.cell


class StripReader:
    """Reads strips of windows in order (one caller at a time, under the pipeline's read lock)
    and does the per-strip work that needs the pixels: validity per cell, the preview, and the
    index bands of a row of windows."""

    def __init__(
        self,
        scene: Scene,
        plan: Plan,
        index_list: list[vi.Index],
        step: int,
        clip_cells: np.ndarray | None,
        preview: maps.PreviewCanvas,
        index_row: _IndexRow | None,
        needed: list[str],
    ) -> None:
        self.scene, self.plan, self.grid = scene, plan, plan.grid
        self.index_list, self.step, self.clip_cells = index_list, step, clip_cells
        self.preview, self.index_row = preview, index_row
        self.idx_bands = vi.needed_bands(index_list)
        self.bands = list(dict.fromkeys(needed + self.idx_bands + preview.bands))
        self.positions = {b: i for i, b in enumerate(self.bands)}

    def read(self, r: int, c0: int, n: int, buffers: Buffers) -> Strip:
        g, scene = self.grid, self.scene
        s, m = g.stride, g.margin
        win = g.strip(r, c0, n)
        shape = (len(self.bands), g.tile, n * s + g.overlap)
        data, valid = scene.read(
            win, self.bands, out=buffers.get("data", shape, scene.dtype), zoom=self.plan.zoom
        )
        # Rows/cols past the image edge are padding, not data.
        h_img = min(s, g.height - r * s)
        w_img = min(n * s, g.width - c0 * s)
        all_valid = is_all_valid(valid)  # no mask, no nodata, no padding: skip the mask work
        core = valid[m : m + s, m : m + n * s]
        core_valid = None
        if not all_valid or self.clip_cells is not None:
            core_valid = core.copy()
            if self.clip_cells is not None:
                per = g.per_window
                inside = self.clip_cells[r * per : (r + 1) * per, c0 * per : (c0 + n) * per]
                full = np.zeros((per, n * per), bool)
                full[: inside.shape[0], : inside.shape[1]] = inside
                core_valid &= np.repeat(np.repeat(full, g.cell, axis=0), g.cell, axis=1)
        strip = Strip(r, c0, n, data, core_valid, self.positions)
        self._preview_and_indices(strip, all_valid, core, h_img, w_img)
        return strip

    def _take(self, data: np.ndarray, names: list[str]) -> np.ndarray:
        pos = [self.positions[b] for b in names]
        if pos and pos == list(range(pos[0], pos[0] + len(pos))):
            return data[pos[0] : pos[0] + len(pos)]
        return data[pos]

    def _preview_and_indices(
        self, strip: Strip, all_valid: bool, core: np.ndarray, h_img: int, w_img: int
    ) -> None:
        g, step, preview = self.grid, self.step, self.preview
        s, m, r, c0, n = g.stride, g.margin, strip.r, strip.c0, strip.n
        # The preview is shrunk from the index's reduced bands when it shows only those and is
        # coarser than them (the usual case on an orthomosaic), else from the full block.
        shown_reduced = (
            bool(self.index_list)
            and step > 1
            and max(preview.sx, preview.sy) * step <= 1.0
            and set(preview.bands) <= set(self.idx_bands)
        )
        if not shown_reduced:
            preview.add(
                self._take(strip.data, preview.bands)[:, m : m + h_img, m : m + w_img],
                None if all_valid else core[:h_img, :w_img],
                r * s,
                c0 * s,
            )
        if not self.index_list:
            return
        # Index pixels of the windows' kept centres only, at 1/step resolution.
        bands = self._take(strip.data, self.idx_bands)[:, m : m + s, m : m + n * s]
        block = bands[:, :h_img, :w_img]
        valid = strip.core_valid[:h_img, :w_img] if strip.core_valid is not None else None
        reduced: list[np.ndarray] = list(block)
        if step > 1:
            hh, ww = math.ceil(h_img / step), math.ceil(w_img / step)
            # Average in the sensor's own integer type (cv2 does uint8/uint16).
            reduced = [cv2.resize(b, (ww, hh), interpolation=cv2.INTER_AREA) for b in block]
            if valid is not None:
                small = cv2.resize(
                    valid.astype(np.uint8), (ww, hh), interpolation=cv2.INTER_NEAREST
                )
                valid = small > 0
            if shown_reduced:
                preview.add(
                    np.stack([reduced[self.idx_bands.index(b)] for b in preview.bands]),
                    valid,
                    r * s,
                    c0 * s,
                    size=(h_img, w_img),
                )
        assert self.index_row is not None  # made whenever there are indices
        self.index_row.add(c0 * s // step, reduced, valid)
        if c0 + n == g.window_cols:
            self.index_row.flush(r)


def _classify(
    scene: Scene,
    plan: Plan,
    index_list: list[vi.Index],
    st: Staging,
    settings: Settings,
    clip_cells: np.ndarray | None,
    progress: Progress | None,
    n_infer: int = 1,
) -> CellMaps:
    grid = plan.grid
    rows, cols, per = grid.rows, grid.cols, grid.per_window
    n_cls = len(plan.classes)
    classes = np.full((rows, cols), NODATA, np.uint8)
    confidence = np.full((rows, cols), NODATA, np.uint8) if plan.method == "model" else None
    cover = (
        None
        if plan.method == "model" and not plan.segmentation
        else np.full((rows, cols, n_cls), NODATA, np.uint8)
    )
    cell_index = np.full((rows, cols, max(len(index_list), 1)), np.nan, np.float32)
    step = _index_step(grid, settings.index_max_size)
    stats = [maps.RunningStats(i) for i in index_list]

    needed: list[str] = []
    to_model = None
    if plan.bundle is not None:
        needed = list(plan.bundle.info.bands)
        to_model = _model_converter(scene, needed, plan.bundle.info.dtype)
    elif plan.vegetation is not None:
        needed = list(plan.vegetation.bands)
    preview = maps.PreviewCanvas(scene, grid.width, grid.height)
    idx_bands = vi.needed_bands(index_list)

    scratch = None
    scratch_path = st.file("scratch-indices.tif")
    if index_list:
        scratch = open_scratch_raster(
            scratch_path,
            width=math.ceil(grid.width / step),
            height=math.ceil(grid.height / step),
            count=len(index_list),
            dtype="float32",
            transform=maps.working_transform(scene, plan.zoom) @ Affine.scale(step),
            crs=scene.crs,
            nodata=vi.NODATA,
        )
        for i, idx in enumerate(index_list, start=1):
            # Carried into each index COG (see _single_band_cog).
            scratch.set_band_description(i, idx.title)
            scratch.update_tags(i, index=idx.name, formula=idx.formula)
    index_row = (
        _IndexRow(grid, step, scene.dtype, index_list, idx_bands, stats, scratch, cell_index)
        if index_list
        else None
    )
    reader = StripReader(scene, plan, index_list, step, clip_cells, preview, index_row, needed)
    labeller: Labeller = labeller_for(plan, grid, to_model)
    batch = model_batch(settings, plan.segmentation, grid.tile)
    wrows, wcols = grid.window_rows, grid.window_cols
    total = wrows * wcols
    strips = iter(
        [(r, c0, min(batch, wcols - c0)) for r in range(wrows) for c0 in range(0, wcols, batch)]
    )
    read_lock = threading.Lock()  # the dataset, scratch raster, stats and preview: one at a time
    tally_lock = threading.Lock()
    tally: dict[str, float] = {"windows": 0, "done": 0, "infer_s": 0.0}
    errors: list[BaseException] = []

    def store(strip: Strip, cells: Cells) -> None:
        y0, x0 = strip.r * per, strip.c0 * per
        h = min(cells.classes.shape[0], rows - y0)
        w = min(cells.classes.shape[1], cols - x0)
        classes[y0 : y0 + h, x0 : x0 + w] = cells.classes[:h, :w]
        if confidence is not None and cells.confidence is not None:
            confidence[y0 : y0 + h, x0 : x0 + w] = cells.confidence[:h, :w]
        if cover is not None and cells.cover is not None:
            cover[y0 : y0 + h, x0 : x0 + w] = cells.cover[:h, :w]

    def work() -> None:
        """Read the next strip (in order, under the lock), then label it.

        Each worker reads into its own buffers, reused strip after strip (see `Buffers`).
        `n_infer` of these run side by side, each with a single-threaded ONNX Runtime call:
        while one runs the model the other reads, so reading and index work fill the cores'
        gaps instead of interrupting a multi-threaded model run (measured on 2 cores).
        """
        buffers = Buffers()
        try:
            while not errors:
                with read_lock:
                    nxt = next(strips, None)
                    if nxt is None:
                        return
                    strip = reader.read(*nxt, buffers)
                t0 = time.perf_counter()
                cells = labeller.label(strip, buffers)
                store(strip, cells)
                with tally_lock:
                    tally["infer_s"] += time.perf_counter() - t0
                    tally["windows"] += cells.windows
                    tally["done"] += strip.n
                    if progress:
                        progress(int(tally["done"]), total)
        except BaseException as e:  # raised again by the main thread
            errors.append(e)

    others = [
        threading.Thread(target=work, name=f"khet-worker-{i}", daemon=True)
        for i in range(n_infer - 1)
    ]
    try:
        for th in others:
            th.start()
        work()
        for th in others:
            th.join()
    finally:
        if scratch is not None:
            scratch.close()
    if errors:
        raise errors[0]
    analysed = int((classes != NODATA).sum())
    return CellMaps(
        classes=classes,
        confidence=confidence,
        cover=cover,
        cell_index=cell_index,
        analysed=analysed,
        skipped=rows * cols - analysed,
        windows=int(tally["windows"]),
        inference_seconds=float(tally["infer_s"]) / n_infer,
        index_stats=stats,
        index_step=step,
        index_paths={idx.name: st.file(f"indices/{idx.name}.tif") for idx in index_list},
        scratch_path=scratch_path if index_list else None,
        preview=preview,
    )


def _index_cogs(pool: ThreadPoolExecutor, result: CellMaps, index_list: list[vi.Index]):
    """Start writing each index map from the scratch raster as its own COG; the futures."""
    if not index_list or result.scratch_path is None:
        return []
    return [
        pool.submit(_single_band_cog, result.scratch_path, i, result.index_paths[idx.name], idx)
        for i, idx in enumerate(index_list, start=1)
    ]


def _single_band_cog(scratch: Path, band: int, dest: Path, idx: vi.Index) -> None:
    """One band of the scratch raster as its own COG, through GDAL's `vrt://` band subset (no
    copy): its description, metadata, nodata and georeference come along."""
    import rasterio

    with rasterio.open(f"vrt://{scratch}?bands={band}") as one:
        cog_from(one, dest, resampling="average", nodata=vi.NODATA)


def _model_converter(
    scene: Scene, names: list[str], dtype: str
) -> Callable[[np.ndarray], np.ndarray]:
    if dtype == "uint8":
        if scene.dtype != "uint8":
            # Sampled here, once: the workers convert outside the read lock, and two threads
            # must not read the dataset at once.
            scene.common_scale(names)
        return lambda a: scene.to_uint8(a, names, keep_colour=True)
    if dtype == "uint16" and scene.dtype == "uint16":
        return lambda a: a
    raise KhetError(
        f"The model takes {dtype} input, which Khet cannot make from {scene.dtype} imagery."
    )


class _IndexRow:
    """One row of cells' index pixels, gathered strip by strip, then computed at once.

    Per strip the reduced bands are a few thousand pixels: a dozen NumPy calls per strip cost
    more than their arithmetic. A row (all its strips, read in order under the read lock) is
    computed, added to the statistics, averaged per cell and written to the scratch raster in
    one go when its last strip arrives.
    """

    def __init__(self, grid: Grid, step, dtype, index_list, idx_bands, stats, scratch, cell_index):
        self.grid, self.step = grid, step
        self.index_list, self.idx_bands = index_list, idx_bands
        self.stats, self.scratch, self.cell_index = stats, scratch, cell_index
        self.width = math.ceil(grid.width / step)
        hh = math.ceil(grid.stride / step)
        self.bands = np.zeros((len(idx_bands), hh, self.width), dtype)
        self.valid = np.ones((hh, self.width), bool)
        self.masked = False
        self.rows = hh

    def add(self, x0: int, bands, valid: np.ndarray | None) -> None:
        """A strip's reduced core bands (C arrays of h x w) starting at reduced column x0."""
        h, w = bands[0].shape
        self.rows = h  # the image's last row of cells may be shorter
        for i, b in enumerate(bands):
            self.bands[i, :h, x0 : x0 + w] = b
        if valid is not None:
            self.valid[:h, x0 : x0 + w] = valid
            self.masked = True

    def flush(self, r: int) -> None:
        grid, n_idx, h = self.grid, len(self.index_list), self.rows
        bands = self.bands[:, :h].astype(np.float32)
        valid = self.valid[:h] if self.masked else None
        values = vi.compute(self.index_list, bands, self.idx_bands, valid)
        for st_, v in zip(self.stats, values, strict=True):
            st_.add(v)
        # Mean of each index over each cell of the row of windows, all cells at once.
        cw = grid.cell // self.step  # reduced pixels per cell side
        per = grid.per_window
        full = np.full((n_idx, per * cw, grid.cols * cw), np.nan, np.float32)
        full[:, :h, : self.width] = values
        cells = full.reshape(n_idx, per, cw, grid.cols, cw)
        finite = np.isfinite(cells)
        count = finite.sum(axis=(2, 4))
        total = np.where(finite, cells, 0).sum(axis=(2, 4))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(count > 0, total / np.maximum(count, 1), np.nan)  # idx x per x cols
        y0 = r * per
        y1 = min(y0 + per, grid.rows)
        self.cell_index[y0:y1] = means[:, : y1 - y0].transpose(1, 2, 0)
        out = np.where(np.isfinite(values), values, vi.NODATA).astype(np.float32)
        self.scratch.write(out, window=Window(0, r * grid.stride // self.step, self.width, h))
        self.valid[:] = True
        self.masked = False
