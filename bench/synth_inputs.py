"""Benchmark inputs: synthetic atlases and medium-magnification images, cached as MRC files.

Uses ``ptolemy_rt.synthetic.atlas`` / ``medmag_image`` (the project's generator) when they
exist; otherwise the small fallback generators below (``own_atlas``, ``own_medmag``).
Arrays are [row, col]; points (x, y) = (col, row), px. Deterministic for a given seed.

Fallback atlas: a square grid at an angle (default 12°), pitch in px, grid bars dark
(~12 counts), squares bright (per-square level 60..220 counts, some empty or broken), optional
disk-shaped grid edge, Poisson noise; stored as int16 like the published atlas.
Fallback medium-mag image: holes (radius ≈ 0.3 × spacing, px) on a lattice at an angle, brighter
than the carbon film, a darker rim, some empty holes, Gaussian noise; stored as float32.
Both are generated in row strips to keep memory near one output array.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

STRIP = 512  # rows per generated strip
STORE_VERSION = 2  # bump when the stored form changes (2: integer atlases stored as int16)


def _lattice_uv(rows: np.ndarray, cols: np.ndarray, angle_deg: float, pitch: float, phase=(0.37, 0.61)):
    a = math.radians(angle_deg)
    y = rows[:, None].astype(np.float64)
    x = cols[None, :].astype(np.float64)
    u = (x * math.cos(a) + y * math.sin(a)) / pitch + phase[0]
    v = (-x * math.sin(a) + y * math.cos(a)) / pitch + phase[1]
    return u, v


def own_atlas(seed: int, shape=(2048, 2048), pitch: float = 96.0, angle_deg: float = 12.0,
              bar_frac: float = 0.32, disk: bool = False):
    """(image int16 [row, col], truth dict) — see the module docstring."""
    h, w = shape
    rng = np.random.default_rng(seed)
    n_cells = int(2 * (h + w) / pitch) + 8
    off = n_cells // 2
    level = rng.uniform(60, 220, size=(n_cells, n_cells))
    kind = rng.random((n_cells, n_cells))
    level[kind < 0.08] = 14.0  # empty / collapsed square
    level[(kind >= 0.08) & (kind < 0.12)] = 240.0  # broken: no ice
    img = np.empty(shape, dtype=np.int16)
    cols = np.arange(w)
    half = bar_frac / 2
    cy, cx, rad = h / 2, w / 2, 0.47 * min(h, w)
    inside_cells = set()
    for s in range(0, h, STRIP):
        rows = np.arange(s, min(h, s + STRIP))
        u, v = _lattice_uv(rows, cols, angle_deg, pitch)
        iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        fu, fv = u - iu, v - iv
        # soft-edged square: distance into the square from the bar, in lattice units
        edge = np.minimum(np.minimum(fu - half, 1 - half - fu), np.minimum(fv - half, 1 - half - fv))
        wgt = np.clip(edge * pitch / 2.0 + 0.5, 0.0, 1.0)
        lev = level[np.clip(iu + off, 0, n_cells - 1), np.clip(iv + off, 0, n_cells - 1)]
        lam = 12.0 + wgt * (lev - 12.0)
        if disk:
            r = np.hypot(rows[:, None] - cy, cols[None, :] - cx)
            lam = np.where(r > rad, 3.0, lam)
        g = np.random.default_rng([seed, s])
        img[rows[0]:rows[-1] + 1] = np.minimum(g.poisson(lam), 32767).astype(np.int16)
        centre = (wgt > 0.99) & (lev > 20)
        if disk:
            centre &= r <= rad
        inside_cells.update(zip(iu[centre].tolist(), iv[centre].tolist()))
    return img, {"generator": "bench.own_atlas", "n_squares_visible": len(inside_cells), "pitch_px": pitch,
                 "angle_deg": angle_deg}


def own_medmag(seed: int, shape=(2048, 2048), spacing: float = 290.0, angle_deg: float = 33.0):
    """(image float32 [row, col], truth dict) — see the module docstring."""
    h, w = shape
    rng = np.random.default_rng(seed)
    n_cells = int(2 * (h + w) / spacing) + 8
    off = n_cells // 2
    level = rng.uniform(120, 140, size=(n_cells, n_cells))
    level[rng.random((n_cells, n_cells)) < 0.1] = 100.0  # empty / thick-ice holes
    radius = 0.3 * spacing
    img = np.empty(shape, dtype=np.float32)
    cols = np.arange(w)
    holes = set()
    for s in range(0, h, STRIP):
        rows = np.arange(s, min(h, s + STRIP))
        u, v = _lattice_uv(rows, cols, angle_deg, spacing)
        iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        d = np.hypot(u - iu - 0.5, v - iv - 0.5) * spacing  # px from the hole centre
        inside = np.clip(radius - d + 0.5, 0.0, 1.0)
        rim = np.exp(-0.5 * ((d - radius) / 4.0) ** 2)
        lev = level[np.clip(iu + off, 0, n_cells - 1), np.clip(iv + off, 0, n_cells - 1)]
        base = 112.0 + 3.0 * (rows[:, None] / h) + 2.0 * (cols[None, :] / w)
        val = base + inside * (lev - base) - 25.0 * rim
        g = np.random.default_rng([seed, s])
        img[rows[0]:rows[-1] + 1] = (val + g.normal(0.0, 4.0, size=val.shape)).astype(np.float32)
        c = d < 2
        holes.update(zip(iu[c].tolist(), iv[c].tolist()))
    return img, {"generator": "bench.own_medmag", "n_holes_visible": len(holes), "spacing_px": spacing,
                 "angle_deg": angle_deg}


def _project_generator(kind: str):
    try:
        from ptolemy_rt import synthetic  # the project's generator (owner: ownmodels)
    except ImportError:
        return None
    fn = getattr(synthetic, "atlas" if kind == "lowmag" else "medmag_image", None)
    return fn if callable(fn) else None


def _jsonable(truth) -> dict:
    if isinstance(truth, dict):
        out = {}
        for k, v in truth.items():
            if isinstance(v, (int, float, str, bool)) or v is None:
                out[k] = v
            elif isinstance(v, (list, tuple, np.ndarray)):
                out[f"n_{k}"] = len(v)
        return out
    try:
        return {"n_items": len(truth)}
    except TypeError:
        return {"truth": type(truth).__name__}


def make_input(cache_dir: Path, name: str, kind: str, seed: int, shape, project_kwargs: dict,
               own_kwargs: dict, prefer_project: bool = True) -> tuple[Path, dict]:
    """Generate (or reuse) bench input `name` and return (mrc path, info dict).

    kind: "lowmag" (atlas) or "medmag". The cache key includes the generator used, so a
    project generator that appears later replaces the fallback images.
    """
    import mrcfile

    gen = _project_generator(kind) if prefer_project else None
    source = "ptolemy_rt.synthetic" if gen is not None else "bench.synth_inputs"
    kw = project_kwargs if gen is not None else own_kwargs
    key = hashlib.sha1(json.dumps([source, seed, list(shape), kw, STORE_VERSION], sort_keys=True).encode()).hexdigest()[:8]
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{name}-{key}.mrc"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())
    truth = None
    if gen is not None:
        try:
            image, truth = gen(seed, shape=tuple(shape), **project_kwargs)
        except Exception as e:  # fall back rather than fail the bench
            print(f"note: ptolemy_rt.synthetic failed for {name} ({type(e).__name__}: {e}); using the bench generator")
            gen = None
            source = "bench.synth_inputs"
    if gen is None:
        fn = own_atlas if kind == "lowmag" else own_medmag
        image, truth = fn(seed, shape=tuple(shape), **own_kwargs)
    image = np.asarray(image)
    if kind == "lowmag" and image.dtype.kind == "f" and float(image.max()) <= 32767 and float(image.min()) >= -32768 \
            and bool(np.all(image == np.round(image))):
        image = image.astype(np.int16)  # integer counts: store as int16 like SerialEM atlases
    elif image.dtype == np.float64:
        image = image.astype(np.float32)
    tmp = path.with_suffix(".tmp")
    with mrcfile.new(tmp, overwrite=True) as m:
        m.set_data(image)
    tmp.replace(path)
    info = {"source": source, "seed": seed, "shape": list(image.shape), "dtype": str(image.dtype),
            "params": kw, **_jsonable(truth)}
    meta.write_text(json.dumps(info, indent=1))
    return path, info


def make_serialem_montage(cache_dir: Path, name: str, seed: int = 13, n: int = 6, piece: int = 2048,
                          step: int = 1844, draw_bin: int = 4, pixel_spacing_a: float = 2312.0,
                          angle_deg: float = 8.0, pitch: float = 140.0) -> tuple[Path, dict]:
    """A SerialEM-style stage montage: an int16 MRC stack of n×n pieces of piece² px at
    `step` px spacing (x outer, y inner, as SerialEM orders them) and its ``.mdoc``
    (PieceCoordinates, StagePosition = 0.1·pixel spacing µm/px × piece centre, rotated 3°,
    PixelSpacing Å, MontSection MoveStage = 1). The pixels are an atlas drawn by
    ``ptolemy_rt.synthetic.atlas`` at 1/`draw_bin` of the size and repeated draw_bin × draw_bin,
    so the montage binned by draw_bin (the lowmag auto binning at 2312 Å/px) is that atlas
    exactly. Written piece by piece (memory: one piece). Returns (stack path, info)."""
    import mrcfile

    from ptolemy_rt import synthetic

    full = (n - 1) * step + piece
    assert piece % draw_bin == 0 and step % draw_bin == 0
    key = hashlib.sha1(json.dumps(["serialem-montage", seed, n, piece, step, draw_bin, pixel_spacing_a, angle_deg,
                                   pitch, STORE_VERSION], sort_keys=True).encode()).hexdigest()[:8]
    cache_dir.mkdir(parents=True, exist_ok=True)
    folder = cache_dir / f"{name}-{key}"
    path = folder / "map.mrc"
    meta = folder / "info.json"
    if path.exists() and meta.exists() and (folder / "map.mrc.mdoc").exists():
        return path, json.loads(meta.read_text())
    folder.mkdir(exist_ok=True)
    small, truth = synthetic.atlas(seed, shape=(full // draw_bin, full // draw_bin), pitch=pitch, angle_deg=angle_deg)
    small = np.rint(small).astype(np.int16)
    offs = [(ix * step, iy * step) for ix in range(n) for iy in range(n)]
    px_um = pixel_spacing_a * 1e-4
    a = math.radians(3.0)
    rot = px_um * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    tmp = folder / "map.tmp"
    m = mrcfile.new_mmap(tmp, shape=(len(offs), piece, piece), mrc_mode=1, overwrite=True)
    try:
        k, pk = draw_bin, piece // draw_bin
        for z, (x, y) in enumerate(offs):
            blk = small[y // k:y // k + pk, x // k:x // k + pk]
            m.data[z] = np.repeat(np.repeat(blk, k, axis=0), k, axis=1)
        m.voxel_size = pixel_spacing_a
        m.update_header_stats()
    finally:
        m.close()
    lines = [f"PixelSpacing = {pixel_spacing_a}", f"ImageSize = {piece} {piece}", "Montage = 1", "DataMode = 1", "",
             "[T = SerialEM: bench montage (synthetic)]", ""]
    for z, (x, y) in enumerate(offs):
        sx, sy = rot @ np.array([x + piece / 2 - full / 2, y + piece / 2 - full / 2])
        lines += [f"[ZValue = {z}]", f"PieceCoordinates = {x} {y} 0", f"StagePosition = {sx:.3f} {sy:.3f}",
                  f"PixelSpacing = {pixel_spacing_a}", ""]
    lines += ["[MontSection = 0]", "MoveStage = 1", f"FullMontSize = {full} {full}", ""]
    (folder / "map.mrc.mdoc").write_text("\n".join(lines))
    tmp.replace(path)
    info = {"source": "bench.synth_inputs.make_serialem_montage (ptolemy_rt.synthetic.atlas)", "seed": seed,
            "pieces": len(offs), "piece": piece, "step": step, "shape": [full, full], "draw_bin": draw_bin,
            "pixel_spacing_A": pixel_spacing_a, "params": {"pitch": pitch, "angle_deg": angle_deg},
            **_jsonable(truth)}
    meta.write_text(json.dumps(info, indent=1))
    return path, info


if __name__ == "__main__":
    # in a child process (a CLI forked from a process that held a big image reports that memory in
    # its own ru_maxrss): `python synth_inputs.py serialem-montage CACHE_DIR NAME` or
    # `python synth_inputs.py make-input CACHE_DIR '[name, kind, seed, shape, project_kwargs, own_kwargs]'`;
    # prints the MRC path (`make_input` writes the info beside it, same name, .json)
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "serialem-montage":
        p, _ = make_serialem_montage(Path(sys.argv[2]), sys.argv[3])
        print(p)
    elif len(sys.argv) == 4 and sys.argv[1] == "make-input":
        p, _ = make_input(Path(sys.argv[2]), *json.loads(sys.argv[3]))
        print(p)
    else:
        raise SystemExit("usage: synth_inputs.py serialem-montage CACHE_DIR NAME | make-input CACHE_DIR JSON")
