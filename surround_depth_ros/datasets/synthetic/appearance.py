"""Procedural textures, sky and lighting: what makes synthetic images worth learning from.

Flat colours would let a network read depth from colour alone; asphalt grain, lane paint,
paving tiles, window grids, wheels and foliage give it the edges, texture gradients and
perspective cues real streets have. Everything is a pure function of the hit point, the
primitive and the seed (integer hashing, no global random state), so renders are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from surround_depth_ros.datasets.synthetic.raycast import BOX_HIT, RayHits
from surround_depth_ros.datasets.synthetic.world import (
    BUILDING,
    FOLIAGE,
    GLASS,
    GROUND,
    PEDESTRIAN,
    POLE,
    TRUNK,
    VEHICLE,
    Scene,
    StreetLayout,
)

_HORIZON = (0.78, 0.84, 0.9)
_ZENITH = (0.22, 0.42, 0.78)


def _hash(ix: torch.Tensor, iy: torch.Tensor, salt: torch.Tensor | float) -> torch.Tensor:
    """Uniform [0, 1) per integer lattice point (given as floats).

    Only multiply, add and fract ("hash without sine"): exactly rounded IEEE operations give the
    same textures on every machine, unlike sin-based hashes, and run far faster than 64-bit
    integer mixing on the CPU.
    """
    x, y = ix + 17.31 * salt, iy + 29.47 * salt
    a, b, c = torch.frac(x * 0.1031), torch.frac(y * 0.1030), torch.frac(x * 0.0973)
    mix = a * (b + 33.33) + b * (c + 33.33) + c * (a + 33.33)
    return torch.frac((a + b + 2 * mix) * (c + mix)).abs()


def value_noise(u: torch.Tensor, v: torch.Tensor, salt: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Smooth noise in [0, 1) with one feature per unit of (u, v)."""
    iu, iv = torch.floor(u), torch.floor(v)
    su, sv = u - iu, v - iv
    su, sv = su * su * (3 - 2 * su), sv * sv * (3 - 2 * sv)
    top = torch.lerp(_hash(iu, iv, salt), _hash(iu + 1, iv, salt), su)
    bottom = torch.lerp(_hash(iu, iv + 1, salt), _hash(iu + 1, iv + 1, salt), su)
    return torch.lerp(top, bottom, sv)


def fbm(u: torch.Tensor, v: torch.Tensor, salt: torch.Tensor | float = 0.0, octaves: int = 3) -> torch.Tensor:
    """Fractal noise in [0, 1): octaves of value noise, each twice as fine and half as strong."""
    total, weight, norm = torch.zeros_like(u), 1.0, 0.0
    for octave in range(octaves):
        scale = 2.0**octave
        total = total + weight * value_noise(u * scale, v * scale, salt + 7.0 * octave)
        norm += weight
        weight *= 0.5
    return total / norm


def _salt(value: torch.Tensor | int) -> torch.Tensor | float:
    """A hash salt small enough for float32 lattice maths, from a seed or object id."""
    return (value % 997).to(torch.float32) if isinstance(value, torch.Tensor) else float(value % 997)


def _rgb(value: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32, device=like.device)


def _band(x: torch.Tensor, center: float, half_width: float) -> torch.Tensor:
    return (x - center).abs() < half_width


def ground_albedo(x: torch.Tensor, y: torch.Tensor, layout: StreetLayout, seed: int) -> torch.Tensor:
    """Road with lane paint and parking bays, curb, tiled sidewalk, and earth beyond."""
    ay = y.abs()
    seed = _salt(seed)
    grain = fbm(x * 1.5, y * 1.5, seed, 3)
    fine = value_noise(x * 9.0, y * 9.0, seed + 1)
    asphalt = (0.13 + 0.07 * grain + 0.04 * fine)[:, None] * _rgb((1.0, 1.0, 1.04), x)
    lanes_edge = layout.lanes_per_direction * layout.lane_width
    paint = torch.zeros_like(ay, dtype=torch.bool)
    yellow = _band(ay, 0.15, 0.06)
    for k in range(1, layout.lanes_per_direction):
        paint |= _band(ay, k * layout.lane_width, 0.075) & (torch.remainder(x, 9.0) < 3.0)
    paint |= _band(ay, lanes_edge, 0.08)
    in_parking = (ay > lanes_edge) & (ay < layout.road_half_width)
    paint |= in_parking & (torch.remainder(x - 3.0 + 0.06, 6.0) < 0.12)
    wear = (0.75 + 0.25 * value_noise(x * 3.0, y * 3.0, seed + 2))[:, None]
    color = torch.where(paint[:, None], wear * _rgb((0.8, 0.8, 0.78), x), asphalt)
    color = torch.where(yellow[:, None], wear * _rgb((0.75, 0.55, 0.08), x), color)
    curb = (ay >= layout.road_half_width) & (ay < layout.sidewalk_inner)
    color = torch.where(curb[:, None], (0.5 + 0.05 * fine)[:, None] * _rgb((1.0, 1.0, 1.0), x), color)
    tile = 1.2
    tx, ty = torch.floor(x / tile), torch.floor(y / tile)
    tone = 0.42 + 0.1 * _hash(tx, ty, seed + 3) + 0.05 * fine
    grout = (torch.remainder(x, tile) < 0.04) | (torch.remainder(y, tile) < 0.04)
    paving = torch.where(grout, 0.6 * tone, tone)[:, None] * _rgb((1.0, 0.97, 0.93), x)
    sidewalk = (ay >= layout.sidewalk_inner) & (ay < layout.sidewalk_outer)
    color = torch.where(sidewalk[:, None], paving, color)
    earth = torch.lerp(_rgb((0.3, 0.25, 0.16), x), _rgb((0.18, 0.32, 0.1), x), grain[:, None])
    return torch.where((ay >= layout.sidewalk_outer)[:, None], earth * (0.8 + 0.4 * fine)[:, None], color)


@dataclass
class _Surface:
    """Hits on one material: local hit points, box face axis, the primitive's size, colour, style, hash salt."""

    loc: torch.Tensor
    face: torch.Tensor
    half: torch.Tensor
    color: torch.Tensor
    style: torch.Tensor
    salt: torch.Tensor
    glass: bool


def _building(s: _Surface) -> torch.Tensor:
    loc, face, half, base = s.loc, s.face, s.half, s.color
    u = torch.where(face == 0, loc[:, 1], loc[:, 0])
    v = loc[:, 2] + half[:, 2]
    spacing, floor_h, fill, tint = s.style.unbind(1)
    wall = base * (0.8 + 0.35 * fbm(u * 1.2, v * 1.2, s.salt, 3))[:, None]
    fu, fv = torch.remainder(u / spacing, 1.0), torch.remainder(v / floor_h, 1.0)
    column, floor = torch.floor(u / spacing), torch.floor(v / floor_h)
    upper = (v > floor_h) & (v < 2 * half[:, 2] - 0.6)
    window = upper & ((fu - 0.5).abs() < fill / 2) & (fv > 0.3) & (fv < 0.85)
    shop = (v > 0.6) & (v < floor_h - 0.7) & (torch.remainder(u / (2 * spacing), 1.0) < 0.8)
    glass = _rgb((0.06, 0.08, 0.12), loc) + 0.08 * tint[:, None] * _rgb((0.2, 0.5, 1.0), loc)
    pane = _hash(column, floor, s.salt)
    lit = (pane > 0.9)[:, None]
    glass = torch.where(lit, _rgb((0.85, 0.75, 0.45), loc), glass * (0.7 + 0.8 * pane)[:, None])
    sill = upper & _band(fv, 0.05, 0.035)
    color = torch.where((window | shop)[:, None], glass, torch.where(sill[:, None], 0.6 * wall, wall))
    roof = _rgb((0.22, 0.22, 0.23), loc) * (0.8 + 0.4 * value_noise(loc[:, 0], loc[:, 1], s.salt))[:, None]
    return torch.where((face == 2)[:, None], roof, color)


def _vehicle(s: _Surface) -> torch.Tensor:
    """Car body (wheels, sills, head and tail lights) or, for the cabin box, windows framed by paint."""
    loc, face, half = s.loc, s.face, s.half
    paint = s.color * (0.92 + 0.16 * value_noise(loc[:, 0] * 2, loc[:, 2] * 2))[:, None]
    if s.glass:
        pane = (face != 2) & (loc[:, 0].abs() < 0.85 * half[:, 0]) & (loc[:, 2] > -0.7 * half[:, 2])
        pane &= (face != 1) | (loc[:, 0].abs() < 0.8 * half[:, 0])
        window = _rgb((0.04, 0.05, 0.07), loc) * (1.0 + 2.0 * value_noise(loc[:, 0] * 3, loc[:, 2] * 3))[:, None]
        return torch.where(pane[:, None], window, paint)
    height = loc[:, 2] + half[:, 2] + 0.2  # body boxes start 0.2 m above the road
    dist = torch.hypot(loc[:, 0].abs() - 0.32 * s.style[:, 0], height - 0.33)  # style[0]: car length
    side = face == 1
    color = torch.where((side & (dist < 0.33))[:, None], _rgb((0.03, 0.03, 0.03), loc), paint)
    color = torch.where((side & (dist < 0.17))[:, None], _rgb((0.45, 0.45, 0.47), loc), color)
    color = torch.where((height < 0.32)[:, None], 0.25 * color, color)
    lamp = (face == 0) & (loc[:, 1].abs() > 0.55 * half[:, 1]) & (loc[:, 1].abs() < 0.9 * half[:, 1])
    lamp &= (loc[:, 2] > 0.1 * half[:, 2]) & (loc[:, 2] < 0.6 * half[:, 2])
    lamp_color = torch.where((loc[:, 0] > 0)[:, None], _rgb((0.95, 0.95, 0.85), loc), _rgb((0.8, 0.05, 0.03), loc))
    return torch.where(lamp[:, None], lamp_color, color)


def _arc(s: _Surface) -> torch.Tensor:
    """Distance around a cylinder's circumference."""
    return torch.atan2(s.loc[:, 1], s.loc[:, 0]) * s.half[:, 0]


def _pole(s: _Surface) -> torch.Tensor:
    return s.color * (0.85 + 0.2 * value_noise(_arc(s) * 8, s.loc[:, 2] * 2, s.salt))[:, None]


def _bark(s: _Surface) -> torch.Tensor:
    return s.color * (0.6 + 0.7 * fbm(_arc(s) * 6, s.loc[:, 2] * 5, s.salt, 2))[:, None]


def _leaves(s: _Surface) -> torch.Tensor:
    return s.color * (0.35 + 1.2 * fbm(_arc(s) * 3, s.loc[:, 2] * 3, s.salt, 3))[:, None]


def _person(s: _Surface) -> torch.Tensor:
    """Trousers, shirt (the primitive's colour) and head, by height."""
    rel = s.loc[:, 2] / s.half[:, 2]
    trousers = s.style[:, 0:1] * _rgb((0.8, 0.85, 1.0), s.loc)
    skin = s.style[:, 1:2] * _rgb((1.0, 0.78, 0.62), s.loc)
    return torch.where((rel < 0.47)[:, None], trousers, torch.where((rel < 0.86)[:, None], s.color, skin))


_SURFACES = {
    BUILDING: _building,
    VEHICLE: _vehicle,
    GLASS: _vehicle,
    POLE: _pole,
    PEDESTRIAN: _person,
    TRUNK: _bark,
    FOLIAGE: _leaves,
}


def _per_hit(values: np.ndarray, primitive: torch.Tensor) -> torch.Tensor:
    """A per-primitive array looked up for each hit."""
    return torch.as_tensor(values, dtype=torch.float32, device=primitive.device)[primitive]


def albedo(hits: RayHits, scene: Scene) -> torch.Tensor:
    """Linear RGB albedo (R,3) at each ray's hit; zeros where nothing was hit."""
    out = torch.zeros(len(hits.t), 3, device=hits.t.device)
    sel = (hits.material == GROUND).nonzero().squeeze(1)
    if len(sel):
        out[sel] = ground_albedo(hits.points[sel, 0], hits.points[sel, 1], scene.layout, scene.seed)
    for material, texture in _SURFACES.items():
        sel = (hits.material == material).nonzero().squeeze(1)
        if not len(sel):
            continue
        prims = scene.boxes if int(hits.kind[sel[0]]) == BOX_HIT else scene.cylinders
        half, color, style = (
            _per_hit(getattr(prims, name), hits.primitive[sel]) for name in ("half", "color", "style")
        )
        salt = _salt(hits.object_id[sel] * 31 + scene.seed * 7)
        out[sel] = texture(_Surface(hits.local[sel], hits.face[sel], half, color, style, salt, material == GLASS))
    return out


@dataclass(frozen=True)
class Lighting:
    """Sun direction (world, unit, pointing to the sun), sun and ambient strength, and haze distance."""

    sun: tuple[float, float, float]
    sun_strength: float = 0.85
    ambient: float = 0.38
    haze_m: float = 450.0

    @staticmethod
    def from_seed(seed: int) -> Lighting:
        rng = np.random.default_rng([seed, 0x5A7])
        azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(25), np.radians(65))
        sun = (np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation))
        return Lighting(tuple(float(s) for s in sun))


def sky(directions: torch.Tensor, seed: int) -> torch.Tensor:
    """Linear RGB of the sky (R,3) along world directions: horizon-to-zenith gradient with clouds."""
    unit = directions / torch.linalg.vector_norm(directions, dim=1, keepdim=True)
    up = unit[:, 2].clamp(0, 1)
    gradient = torch.lerp(_rgb(_HORIZON, unit), _rgb(_ZENITH, unit), up.sqrt()[:, None])
    lift = up.clamp_min(0.03)
    clouds = fbm(unit[:, 0] / lift * 1.5, unit[:, 1] / lift * 1.5, _salt(seed) + 11, 4)
    cover = ((clouds - 0.5) * 3).clamp(0, 1) * (up / 0.1).clamp(0, 1)
    return torch.lerp(gradient, _rgb((0.92, 0.92, 0.94), unit), cover[:, None])


def shade(hits: RayHits, directions: torch.Tensor, scene: Scene, lighting: Lighting) -> torch.Tensor:
    """Final linear RGB (R,3): lambertian sun + ambient on the albedo, haze with distance, sky on misses."""
    base = albedo(hits, scene)
    sun = torch.tensor(lighting.sun, dtype=torch.float32, device=base.device)
    facing = (hits.normal @ sun).clamp_min(0)
    lit = base * (lighting.ambient + lighting.sun_strength * facing)[:, None]
    distance = torch.where(hits.hit, hits.t * torch.linalg.vector_norm(directions, dim=1), 0.0)
    haze = (1 - torch.exp(-distance / lighting.haze_m))[:, None]
    lit = torch.lerp(lit, _rgb(_HORIZON, lit), haze)
    miss = (~hits.hit).nonzero().squeeze(1)
    if len(miss):
        lit[miss] = sky(directions[miss], scene.seed)
    return lit


def to_srgb8(linear: torch.Tensor) -> torch.Tensor:
    """Gamma-encode linear RGB to uint8."""
    return (linear.clamp(0, 1) ** (1 / 2.2) * 255 + 0.5).to(torch.uint8)
