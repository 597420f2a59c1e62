"""Labelled-data folders: real (or synthetic) sessions with operator-selected targets.

Format (version 1) of a folder DIR:

    DIR/dataset.json          {"format": "ptolemy-labels", "version": 1,
                               "kind": "lowmag" | "medmag",
                               "pixel_size_nm": 14.0 | null,
                               "points": "selected" | "all",
                               "description": "..."}            (description optional)
    DIR/images/<name>.mrc     one 2-D image per file (any MRC mode)
    DIR/labels/<name>.json    {"image": "images/<name>.mrc",
                               "points": [{"x": 812.0, "y": 403.5,
                                           "label": "good", "good": true, "radius": 70.0}, ...]}

- Points are (x, y) = (col, row) in px of the image (pixel (r, c) has its centre at
  (x, y) = (c, r)); each must lie inside the image: 0 ≤ x < cols, 0 ≤ y < rows (a point
  may be the centre of a square cut by the image edge only if that centre is inside).
- "x" and "y" are required numbers. Optional: "label" (string, free text such as "good",
  "thick", "edge"), "good" (bool; default true — an operator selection), "radius" (px, the
  hole radius or half the square side; used to decide which prediction lies on which
  labelled target; default: see `evaluate`), "polygon" ([[x, y], ...] px, a square's corners).
- "points": "selected" means the listed points are the operator's selections (positives);
  any other found square/hole is a negative. "all" means every square/hole is listed with
  its own "good" flag (the synthetic evaluation set); found targets matching no point are
  left out of the classification metrics.
- Every image in images/ needs a label file and vice versa; a label file with no points is
  allowed (nothing was selected).

`read_dataset(dir)` validates everything and raises `LabelDataError` (a one-line message
naming the offending file) on malformed input; `write_dataset` writes the same format
(used by `export.evalset` for the synthetic evaluation set).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputImageError

FORMAT = "ptolemy-labels"
VERSION = 1
KINDS = ("lowmag", "medmag")
POINT_MODES = ("selected", "all")


class LabelDataError(InputImageError):
    """A labelled-data folder is malformed; the message names the file and the problem."""


@dataclass
class LabelledImage:
    """One image of a labelled folder.

    name: file stem. image_path: the MRC file. label_path: its JSON.
    shape: (rows, cols) px read from the MRC header.
    points: n×2 float64 (x, y) = (col, row) px. labels: n strings ("" when absent).
    good: n bools. radius: n float64 px (NaN when absent). polygons: n entries, each a
    k×2 (x, y) array or None.
    """

    name: str
    image_path: Path
    label_path: Path
    shape: tuple[int, int]
    points: np.ndarray
    labels: list[str]
    good: np.ndarray
    radius: np.ndarray
    polygons: list = field(default_factory=list)

    def load(self):
        """The validated image, read from `image_path` with `io.read_mrc`.

        Returns
        -------
        io.LoadedImage

        Raises
        ------
        InputImageError
            When the MRC file cannot be read or is not a valid image.
        """
        from .io import read_mrc

        return read_mrc(self.image_path)


@dataclass
class Dataset:
    """A labelled folder: kind ("lowmag" | "medmag"), pixel size (nm/px or None), points
    mode ("selected" | "all"), and its images sorted by name."""

    root: Path
    kind: str
    pixel_size_nm: float | None
    points_mode: str
    description: str
    images: list[LabelledImage]


def _fail(path, problem: str) -> LabelDataError:
    return LabelDataError(f"{path}: {problem}")


def _read_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(path, f"cannot read ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(path, f"bad JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def _image_shape(path: Path) -> tuple[int, int]:
    import mrcfile

    if not path.is_file():
        raise _fail(path, "image file missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", header_only=True, permissive=True) as m:
                nx, ny, nz = int(m.header.nx), int(m.header.ny), int(m.header.nz)
    except Exception as e:  # mrcfile raises assorted errors on garbage
        raise _fail(path, f"not a readable MRC file ({type(e).__name__}: {e})") from None
    if nx <= 0 or ny <= 0:
        raise _fail(path, f"MRC header gives an empty image ({ny}×{nx})")
    if nz != 1:
        raise _fail(path, f"is a stack of {nz} sections; a labelled image must be a single 2-D image")
    return ny, nx


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_points(path: Path, raw, shape) -> tuple:
    if not isinstance(raw, list):
        raise _fail(path, f"'points' must be a list, got {type(raw).__name__}")
    rows, cols = shape
    pts, labs, good, rad, polys = [], [], [], [], []
    for k, p in enumerate(raw):
        where = f"point {k}"
        if not isinstance(p, dict):
            raise _fail(path, f"{where} must be an object with 'x' and 'y', got {type(p).__name__}")
        for key in ("x", "y"):
            if key not in p:
                raise _fail(path, f"{where} has no '{key}'")
            if not _is_num(p[key]):
                raise _fail(path, f"{where}: '{key}' must be a finite number, got {p[key]!r}")
        x, y = float(p["x"]), float(p["y"])
        if not (0 <= x < cols and 0 <= y < rows):
            raise _fail(path, f"{where} (x={x:g}, y={y:g}) is outside the {rows}×{cols} image")
        lab = p.get("label", "")
        if not isinstance(lab, str):
            raise _fail(path, f"{where}: 'label' must be a string, got {lab!r}")
        g = p.get("good", True)
        if not isinstance(g, bool):
            raise _fail(path, f"{where}: 'good' must be true or false, got {g!r}")
        r = p.get("radius", None)
        if r is not None and (not _is_num(r) or r <= 0):
            raise _fail(path, f"{where}: 'radius' must be a positive number, got {r!r}")
        poly = p.get("polygon", None)
        if poly is not None:
            ok = isinstance(poly, list) and len(poly) >= 3 and all(
                isinstance(v, list) and len(v) == 2 and all(_is_num(c) for c in v) for v in poly)
            if not ok:
                raise _fail(path, f"{where}: 'polygon' must be a list of ≥ 3 [x, y] number pairs")
            poly = np.asarray(poly, dtype=np.float64)
        pts.append((x, y))
        labs.append(lab)
        good.append(g)
        rad.append(np.nan if r is None else float(r))
        polys.append(poly)
    return (np.asarray(pts, dtype=np.float64).reshape(-1, 2), labs, np.asarray(good, dtype=bool),
            np.asarray(rad, dtype=np.float64), polys)


def read_dataset(root: str | os.PathLike) -> Dataset:
    """Read and validate a labelled folder (format in the module docstring).

    Parameters
    ----------
    root : str or PathLike
        The folder holding dataset.json, images/ and labels/.

    Returns
    -------
    Dataset
        Images sorted by name; points (x, y) = (col, row) px.

    Raises
    ------
    LabelDataError
        Naming the file, on: missing or bad dataset.json, unknown kind or points mode, a
        label file with bad JSON or wrong types, a missing image, a point outside its
        image, an image without a label file, no label file at all.

    Examples
    --------
    A one-image medmag folder written in a temporary folder, with one hole labelled at
    (x, y) = (30, 20), read back; then a point outside the 64×64 image:

    >>> import json, os, shutil, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> image = np.zeros((64, 64), np.float32); image[20, 30] = 1.0
    >>> root = write_dataset(os.path.join(folder, "set"), "medmag",
    ...                      [("a", image, [{"x": 30.0, "y": 20.0, "radius": 5.0}])], pixel_size_nm=2.0)
    >>> ds = read_dataset(root)
    >>> ds.kind, ds.pixel_size_nm, ds.points_mode, [it.name for it in ds.images], ds.images[0].shape
    ('medmag', 2.0, 'selected', ['a'], (64, 64))
    >>> ds.images[0].points.tolist(), ds.images[0].good.tolist(), ds.images[0].radius.tolist()
    ([[30.0, 20.0]], [True], [5.0])
    >>> _ = (root / "labels" / "a.json").write_text(json.dumps({"points": [{"x": 70, "y": 1}]}))
    >>> read_dataset(root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ptolemy_rt.labels.LabelDataError: ...a.json: point 0 (x=70, y=1) is outside the 64×64 image
    >>> shutil.rmtree(folder)
    """
    root = Path(root)
    if not root.is_dir():
        raise _fail(root, "not a directory (expected a labelled-data folder with dataset.json)")
    meta_path = root / "dataset.json"
    meta = _read_json(meta_path)
    if not isinstance(meta, dict):
        raise _fail(meta_path, "must hold a JSON object")
    if meta.get("format", FORMAT) != FORMAT:
        raise _fail(meta_path, f"'format' must be {FORMAT!r}, got {meta.get('format')!r}")
    if meta.get("version", VERSION) != VERSION:
        raise _fail(meta_path, f"unsupported version {meta.get('version')!r} (this reader knows {VERSION})")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise _fail(meta_path, f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    px = meta.get("pixel_size_nm", None)
    if px is not None and (not _is_num(px) or px <= 0):
        raise _fail(meta_path, f"'pixel_size_nm' must be a positive number or null, got {px!r}")
    mode = meta.get("points", "selected")
    if mode not in POINT_MODES:
        raise _fail(meta_path, f"'points' must be one of {', '.join(POINT_MODES)}, got {mode!r}")
    desc = meta.get("description", "")
    if not isinstance(desc, str):
        raise _fail(meta_path, "'description' must be a string")
    img_dir, lab_dir = root / "images", root / "labels"
    if not lab_dir.is_dir():
        raise _fail(lab_dir, "missing (one JSON label file per image goes here)")
    items = []
    label_files = sorted(lab_dir.glob("*.json"))
    for lp in label_files:
        doc = _read_json(lp)
        if not isinstance(doc, dict):
            raise _fail(lp, "must hold a JSON object with 'image' and 'points'")
        rel = doc.get("image", f"images/{lp.stem}.mrc")
        if not isinstance(rel, str):
            raise _fail(lp, f"'image' must be a path string, got {rel!r}")
        ip = (root / rel).resolve() if not os.path.isabs(rel) else Path(rel)
        if not ip.is_file():
            raise _fail(lp, f"image {rel} not found")
        shape = _image_shape(ip)
        if "points" not in doc:
            raise _fail(lp, "has no 'points' list")
        pts, labs, good, rad, polys = _parse_points(lp, doc["points"], shape)
        items.append(LabelledImage(lp.stem, ip, lp, shape, pts, labs, good, rad, polys))
    if img_dir.is_dir():
        labelled = {it.image_path for it in items}
        for ip in sorted(img_dir.glob("*.mrc")):
            if ip.resolve() not in labelled:
                raise _fail(ip, f"has no label file (expected labels/{ip.stem}.json)")
    if not items:
        raise _fail(lab_dir, "holds no label files (*.json)")
    return Dataset(root, kind, float(px) if px is not None else None, mode, desc, items)


def write_dataset(root: str | os.PathLike, kind: str, items, *, pixel_size_nm: float | None = None,
                  points: str = "selected", description: str = "", dtype=np.float32) -> Path:
    """Write a labelled folder (format in the module docstring; existing files of the same
    names are overwritten).

    Parameters
    ----------
    root : str or PathLike
        The folder (created with images/ and labels/ when missing).
    kind : str
        "lowmag" or "medmag".
    items : iterable of (str, array_like, list of dict)
        (name, 2-D [row, col] image, points): point dicts as in the format, {"x", "y"
        (px, x = col, y = row), optional "label", "good", "radius", "polygon"}.
    pixel_size_nm : float or None
        nm/px, written in dataset.json and in each MRC header.
    points : str
        "selected" or "all" (see the module docstring).
    description : str
        Free text for dataset.json.
    dtype : numpy dtype
        Type of the MRC images (float32, float16 or int16).

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    ValueError
        Unknown kind or points mode.

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> root = write_dataset(os.path.join(folder, "set"), "lowmag",
    ...                      [("a", np.eye(64, dtype=np.float32), [{"x": 10.0, "y": 10.0, "good": False}])])
    >>> sorted(os.listdir(root)), os.listdir(root / "images")
    (['dataset.json', 'images', 'labels'], ['a.mrc'])
    >>> print((root / "labels" / "a.json").read_text().strip())
    {"image": "images/a.mrc", "points": [{"x": 10.0, "y": 10.0, "good": false}]}
    >>> shutil.rmtree(folder)
    """
    import mrcfile

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if points not in POINT_MODES:
        raise ValueError(f"points must be one of {POINT_MODES}, got {points!r}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": VERSION, "kind": kind, "pixel_size_nm": pixel_size_nm,
            "points": points, "description": description}
    (root / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    for name, image, pts in items:
        ip = root / "images" / f"{name}.mrc"
        with mrcfile.new(ip, overwrite=True) as m:
            m.set_data(np.asarray(image).astype(dtype))
            if pixel_size_nm:
                m.voxel_size = pixel_size_nm * 10.0
        clean = []
        for p in pts:
            q = {"x": float(p["x"]), "y": float(p["y"])}
            for k in ("label", "good", "radius", "polygon"):
                if k in p and p[k] is not None:
                    q[k] = p[k]
            clean.append(q)
        doc = {"image": f"images/{name}.mrc", "points": clean}
        (root / "labels" / f"{name}.json").write_text(json.dumps(doc) + "\n", encoding="utf-8")
    return root
