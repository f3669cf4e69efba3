"""Exact, vectorized ray casting against the world's analytic primitives (torch, any device).

Every synthetic sensor is a bundle of rays from one origin, so one caster serves cameras, lidar
and radar. Primitives are shifted to the ray origin in float64 before the float32 maths, which
keeps hits exact to float precision even hundreds of metres from the world origin. Rays need
not be unit length: `t` is in units of the given direction, so camera rays with z = 1 in the
optical frame give the depth z directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from surround_depth_ros.datasets.synthetic.world import GROUND, SKY, Primitives, Scene

# RayHits.kind codes
MISS, GROUND_HIT, BOX_HIT, CYLINDER_HIT = 0, 1, 2, 3
# (ray, primitive) pairs evaluated per chunk: bounds memory to ~100 MB at float32.
_CHUNK_PAIRS = 1 << 21


@dataclass
class RayHits:
    """Nearest hit of each ray. `t` is inf for rays that hit nothing within the range limit.

    `points` are world coordinates (float32, relative precision); `local` is the hit point in the
    primitive's own frame (boxes: centred, axis-aligned; cylinders: from the base centre; ground:
    world x, y, 0); `face` is the box axis hit (0, 1, 2) or, for cylinders, 2 on a cap else 0.
    """

    t: torch.Tensor
    material: torch.Tensor
    object_id: torch.Tensor
    primitive: torch.Tensor
    kind: torch.Tensor
    points: torch.Tensor
    normal: torch.Tensor
    local: torch.Tensor
    face: torch.Tensor

    @property
    def hit(self) -> torch.Tensor:
        return self.kind != MISS


@dataclass
class RayBundles:
    """Rays grouped into bundles, each enclosed by planes through the ray origin.

    `group` (R,) is each ray's bundle; `planes` (G, K, 3) are inward normals (world frame) that
    every ray of a bundle satisfies (n . d >= 0). A primitive entirely on the outer side of one
    plane is skipped for that bundle: camera tiles or lidar sectors then test only the few
    primitives they can see instead of every primitive in the scene. `outer` (K, 3), when
    given, encloses all bundles (a camera's frustum) and culls the scene once before the tiles.
    """

    group: torch.Tensor
    planes: np.ndarray
    outer: np.ndarray | None = None


def _shifted(prims: Primitives, origin: np.ndarray, device: torch.device) -> torch.Tensor:
    """(n, 8) float32 rows [centre - origin (3), half extents (3), cos yaw, sin yaw]: one gather per pair."""
    table = np.concatenate(
        [prims.center - origin, prims.half, np.cos(prims.yaw)[:, None], np.sin(prims.yaw)[:, None]], 1
    )
    return torch.as_tensor(table, dtype=torch.float32, device=device)


def _box_t(d: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Slab test of rays d (N,3) from the origin against yaw-rotated boxes (`_shifted` rows); t (N,), inf = miss."""
    c, h, cos, sin = rows[:, 0:3], rows[:, 3:6], rows[:, 6], rows[:, 7]
    dx, dy, dz = d.unbind(1)
    # ray origin (0) and direction in the box frame
    origin = (-(c[:, 0] * cos + c[:, 1] * sin), c[:, 0] * sin - c[:, 1] * cos, -c[:, 2])
    direction = (dx * cos + dy * sin, dy * cos - dx * sin, dz)
    t_near = t_far = None
    for axis in range(3):
        inv = 1.0 / direction[axis]
        t1 = (-h[:, axis] - origin[axis]) * inv
        t2 = (h[:, axis] - origin[axis]) * inv
        lo, hi = torch.minimum(t1, t2), torch.maximum(t1, t2)
        t_near = lo if t_near is None else torch.maximum(t_near, lo)
        t_far = hi if t_far is None else torch.minimum(t_far, hi)
    return torch.where((t_near <= t_far) & (t_near > 0), t_near, torch.inf)


def _cylinder_t(d: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Vertical capped cylinders (`_shifted` rows: base centre, radius, -, height); t (N,), inf = miss."""
    c, r, height = rows[:, 0:3], rows[:, 3], rows[:, 5]
    dx, dy, dz = d.unbind(1)
    a = dx * dx + dy * dy
    half_b = -(dx * c[:, 0] + dy * c[:, 1])
    cc = c[:, 0] ** 2 + c[:, 1] ** 2 - r * r
    disc = half_b * half_b - a * cc
    t_side = (-half_b - torch.sqrt(disc.clamp_min(0))) / a
    z = t_side * dz
    best = torch.where((disc >= 0) & (t_side > 0) & (z >= c[:, 2]) & (z <= c[:, 2] + height), t_side, torch.inf)
    for cap_z in (c[:, 2], c[:, 2] + height):
        t_cap = cap_z / dz
        px, py = t_cap * dx - c[:, 0], t_cap * dy - c[:, 1]
        inside = (t_cap > 0) & (px * px + py * py <= r * r)
        best = torch.minimum(best, torch.where(inside, t_cap, torch.inf))
    return best


def _outside(normals: np.ndarray, prims: Primitives, centers: np.ndarray, is_cylinder: bool) -> np.ndarray:
    """(M, n) whether each primitive lies entirely on the negative side of each plane through the origin.

    Support test: n.c + extent(n) < 0 with extent sum_a |n.axis_a| half_a for a box and
    r |n_xy| + |n_z| height / 2 for a vertical cylinder (`centers` are the volume centres).
    """
    support = normals @ centers.T
    nx, ny, nz = normals[:, 0:1], normals[:, 1:2], np.abs(normals[:, 2:3])
    if is_cylinder:
        support += np.hypot(nx, ny) * prims.half[:, 0] + nz * (prims.half[:, 2] / 2)
    else:
        c, s = np.cos(prims.yaw), np.sin(prims.yaw)
        support += np.abs(nx * c + ny * s) * prims.half[:, 0] + np.abs(ny * c - nx * s) * prims.half[:, 1]
        support += nz * prims.half[:, 2]
    return support < 0


def _visible(
    prims: Primitives, is_cylinder: bool, origin: np.ndarray, bundles: RayBundles, max_range_m: float
) -> np.ndarray:
    """(G, n) whether primitive i may be hit by a ray of bundle g (inside its planes and within range)."""
    centers, radii = prims.bounding_spheres(is_cylinder)
    centers = centers - origin
    keep = np.linalg.norm(centers, axis=1) - radii < max_range_m
    if bundles.outer is not None:
        keep &= ~np.any(_outside(bundles.outer, prims, centers, is_cylinder), axis=0)
    planes = bundles.planes
    visible = np.zeros((len(planes), len(prims)), dtype=bool)
    index = np.flatnonzero(keep)
    if planes.shape[1] == 0:
        visible[:, index] = True
    elif len(index):
        outside = _outside(planes.reshape(-1, 3), prims.subset(index), centers[index], is_cylinder)
        visible[:, index] = ~np.any(outside.reshape(*planes.shape[:2], -1), axis=1)
    return visible


def _nearest(
    table: torch.Tensor,
    intersect: Callable[..., torch.Tensor],
    d: torch.Tensor,
    group: torch.Tensor,
    visible: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest t (R,) and primitive index (R,) over the (ray, primitive) pairs the bundles allow."""
    device = d.device
    vis = torch.as_tensor(np.ascontiguousarray(visible), device=device)
    per_group = vis.sum(1)
    group_start = torch.cumsum(per_group, 0) - per_group
    vis_prim = vis.nonzero()[:, 1]
    counts = per_group[group]
    ends = torch.cumsum(counts, 0)
    # nearest hit packed as (float32 bits of t) << 32 | index: one integer min finds both
    best = torch.full((len(d),), _pack_inf(), dtype=torch.int64, device=device)
    total = int(ends[-1]) if len(ends) else 0
    cuts = torch.searchsorted(
        ends, torch.arange(_CHUNK_PAIRS, max(total, _CHUNK_PAIRS), _CHUNK_PAIRS, device=device), right=True
    )
    bounds = [0, *cuts.tolist(), len(d)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if hi <= lo:
            continue
        c = counts[lo:hi]
        ray = torch.repeat_interleave(torch.arange(lo, hi, device=device), c)
        if not len(ray):
            continue
        first = torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
        position = torch.arange(len(ray), device=device) - first
        prim = vis_prim[group_start[group[ray]] + position]
        t = intersect(d.index_select(0, ray), table.index_select(0, prim))
        key = (t.view(torch.int32).to(torch.int64) << 32) | prim
        best.scatter_reduce_(0, ray, key, "amin")
    t_best = (best >> 32).to(torch.int32).view(torch.float32)
    return t_best, best & 0xFFFFFFFF


def _pack_inf() -> int:
    return int(np.array(np.inf, np.float32).view(np.int32)) << 32


def cast_rays(
    scene: Scene, origin: np.ndarray, directions: torch.Tensor, max_range_m: float, bundles: RayBundles | None = None
) -> RayHits:
    """Nearest hit of rays `directions` (R,3) world frame, from world point `origin` (3,), up to `max_range_m`."""
    origin = np.asarray(origin, dtype=np.float64).reshape(3)
    d = directions.to(torch.float32)
    device = d.device
    if bundles is None:
        bundles = RayBundles(torch.zeros(len(d), dtype=torch.int64, device=device), np.zeros((1, 0, 3)))
    boxes, cylinders = _shifted(scene.boxes, origin, device), _shifted(scene.cylinders, origin, device)
    limit = max_range_m / torch.linalg.vector_norm(d, dim=1)
    t_best = torch.where(d[:, 2] < 0, -float(origin[2]) / d[:, 2], torch.inf)
    t_best = torch.where((t_best > 0) & (t_best <= limit), t_best, torch.inf)
    kind = torch.where(torch.isfinite(t_best), GROUND_HIT, MISS)
    index = torch.full_like(kind, -1)
    for prims, table, prim_kind, intersect, is_cylinder in (
        (scene.boxes, boxes, BOX_HIT, _box_t, False),
        (scene.cylinders, cylinders, CYLINDER_HIT, _cylinder_t, True),
    ):
        if len(prims) == 0:
            continue
        visible = _visible(prims, is_cylinder, origin, bundles, max_range_m)
        t_prim, i_prim = _nearest(table, intersect, d, bundles.group, visible)
        closer = (t_prim < t_best) & (t_prim <= limit)
        t_best = torch.where(closer, t_prim, t_best)
        kind = torch.where(closer, prim_kind, kind)
        index = torch.where(closer, i_prim, index)
    return _describe(scene, origin, d, t_best, kind, index, boxes, cylinders)


def _describe(
    scene: Scene,
    origin: np.ndarray,
    d: torch.Tensor,
    t: torch.Tensor,
    kind: torch.Tensor,
    index: torch.Tensor,
    boxes: torch.Tensor,
    cylinders: torch.Tensor,
) -> RayHits:
    """Material, normal and local coordinates of each ray's nearest hit."""
    device = d.device
    n = len(d)
    hit = kind != MISS
    t = torch.where(hit, t, torch.inf)
    p_rel = torch.where(hit[:, None], d * t[:, None], 0.0)
    origin32 = torch.as_tensor(origin, dtype=torch.float32, device=device)
    points = p_rel + origin32
    material = torch.full((n,), SKY, dtype=torch.int64, device=device)
    object_id = torch.zeros(n, dtype=torch.int64, device=device)
    normal = torch.zeros(n, 3, device=device)
    normal[:, 2] = 1.0
    local = points.clone()
    face = torch.zeros(n, dtype=torch.int64, device=device)
    material[kind == GROUND_HIT] = GROUND

    sel = (kind == BOX_HIT).nonzero().squeeze(1)
    if len(sel):
        k = index[sel]
        rows = boxes.index_select(0, k)
        c, h, cos, sin = rows[:, 0:3], rows[:, 3:6], rows[:, 6], rows[:, 7]
        q = p_rel[sel] - c
        loc = torch.stack([q[:, 0] * cos + q[:, 1] * sin, q[:, 1] * cos - q[:, 0] * sin, q[:, 2]], 1)
        axis = (loc.abs() - h).abs().argmin(1)
        n_local = torch.zeros_like(loc)
        n_local.scatter_(1, axis[:, None], torch.sign(loc.gather(1, axis[:, None])))
        normal[sel] = torch.stack(
            [n_local[:, 0] * cos - n_local[:, 1] * sin, n_local[:, 0] * sin + n_local[:, 1] * cos, n_local[:, 2]], 1
        )
        local[sel], face[sel] = loc, axis
        _label(material, object_id, sel, k, scene.boxes)

    sel = (kind == CYLINDER_HIT).nonzero().squeeze(1)
    if len(sel):
        k = index[sel]
        rows = cylinders.index_select(0, k)
        c, h = rows[:, 0:3], rows[:, 3:6]
        loc = p_rel[sel] - c
        rho = torch.hypot(loc[:, 0], loc[:, 1])
        on_cap = torch.minimum(loc[:, 2].abs(), (loc[:, 2] - h[:, 2]).abs()) < (rho - h[:, 0]).abs()
        radial = torch.stack([loc[:, 0] / rho.clamp_min(1e-9), loc[:, 1] / rho.clamp_min(1e-9), 0 * rho], 1)
        cap = torch.zeros_like(radial)
        cap[:, 2] = torch.where(loc[:, 2] > h[:, 2] / 2, 1.0, -1.0)
        normal[sel] = torch.where(on_cap[:, None], cap, radial)
        local[sel], face[sel] = loc, torch.where(on_cap, 2, 0)
        _label(material, object_id, sel, k, scene.cylinders)
    return RayHits(t, material, object_id, index, kind, points, normal, local, face)


def _label(
    material: torch.Tensor, object_id: torch.Tensor, sel: torch.Tensor, k: torch.Tensor, prims: Primitives
) -> None:
    material[sel] = torch.as_tensor(prims.material, device=material.device)[k]
    object_id[sel] = torch.as_tensor(prims.object_id, device=material.device)[k]
