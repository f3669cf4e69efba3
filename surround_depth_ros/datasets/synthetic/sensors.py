"""Sensor timing, the spinning lidar and the automotive radar of the synthetic world.

Real rigs never sample all sensors at once: nuScenes cameras fire one after another as the
lidar sweeps past them, radars run on their own clocks. Reproducing that (and the ego motion
between the stamps) is what lets the synthetic data test motion compensation for real.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from surround_depth_ros.datasets.synthetic.appearance import albedo
from surround_depth_ros.datasets.synthetic.raycast import BOX_HIT, CYLINDER_HIT, RayBundles, RayHits, cast_rays
from surround_depth_ros.datasets.synthetic.world import GROUND, RCS_DBSM, SKY, Scene, SyntheticWorld
from surround_depth_ros.sensors.frameset import PointSweep
from surround_depth_ros.sensors.rig import Radar

_NS = 1_000_000_000


@dataclass(frozen=True)
class SensorTiming:
    """When each sensor samples. Stamps are integer nanoseconds; world time 0 is `start_ns`.

    Camera i of frame f fires at start + f / camera_rate + i * camera_interval (0 = all at
    once); radar r sweeps at start + radar_phase(r) + k / radar_rate; the lidar at k / lidar_rate.
    """

    camera_rate_hz: float = 12.0
    camera_interval_ns: int = 8_000_000
    radar_rate_hz: float = 13.0
    lidar_rate_hz: float = 20.0
    start_ns: int = 1_700_000_000 * _NS

    def __post_init__(self) -> None:
        for name in ("camera_rate_hz", "radar_rate_hz", "lidar_rate_hz"):
            if getattr(self, name) <= 0:
                raise ValueError(f"sensor timing: {name} must be > 0, got {getattr(self, name)}")
        if self.camera_interval_ns < 0:
            raise ValueError(f"sensor timing: camera_interval_ns must be >= 0, got {self.camera_interval_ns}")

    def seconds(self, stamp_ns: int) -> float:
        """World time (s) of a stamp."""
        return (int(stamp_ns) - self.start_ns) / _NS

    def camera_stamps(self, frame: int, n_cameras: int) -> np.ndarray:
        first = self.start_ns + round(frame * _NS / self.camera_rate_hz)
        return first + np.arange(n_cameras, dtype=np.int64) * self.camera_interval_ns

    def radar_phase_ns(self, radar_index: int) -> int:
        """Radars are not synchronized: each starts a fixed, different fraction into the period."""
        return round(((0.37 + 0.29 * radar_index) % 1.0) * _NS / self.radar_rate_hz)

    def radar_sweeps_before(self, radar_index: int, stamp_ns: int, count: int) -> list[tuple[int, int]]:
        """(sweep index, stamp) of the `count` most recent sweeps at or before `stamp_ns`, oldest first."""
        period = _NS / self.radar_rate_hz
        offset = self.start_ns + self.radar_phase_ns(radar_index)
        last = int(np.floor((int(stamp_ns) - offset) / period))
        return [(k, offset + round(k * period)) for k in range(last - count + 1, last + 1)]

    def lidar_sweep_before(self, stamp_ns: int) -> tuple[int, int]:
        """(sweep index, stamp) of the most recent lidar sweep at or before `stamp_ns`."""
        period = _NS / self.lidar_rate_hz
        k = int(np.floor((int(stamp_ns) - self.start_ns) / period))
        return k, self.start_ns + round(k * period)


def _hit_velocity(scene: Scene, hits: RayHits) -> np.ndarray:
    """World velocity (R,3) of the surface each ray hit (0 for ground, sky and static objects)."""
    velocity = np.zeros((len(hits.t), 3))
    kind, primitive = hits.kind.cpu().numpy(), hits.primitive.cpu().numpy()
    for code, prims in ((BOX_HIT, scene.boxes), (CYLINDER_HIT, scene.cylinders)):
        sel = kind == code
        velocity[sel] = prims.velocity[primitive[sel]]
    return velocity


@dataclass(frozen=True)
class LidarModel:
    """A spinning multi-beam lidar (nuScenes-like: 32 beams, -30..+10 deg) on the roof.

    The sweep is instantaneous at its stamp, i.e. already motion-compensated the way nuScenes
    ships its sweeps. `T_base_lidar` maps lidar points (x forward, y left, z up) to base.
    """

    name: str = "LIDAR_TOP"
    beams: int = 32
    elevation_deg: tuple[float, float] = (-30.0, 10.0)
    azimuth_step_deg: float = 0.4
    max_range_m: float = 100.0
    range_noise_m: float = 0.02
    sector_deg: float = 6.0
    T_base_lidar: np.ndarray = field(
        default_factory=lambda: np.array([[1, 0, 0, 0.94], [0, 1, 0, 0.0], [0, 0, 1, 1.84], [0, 0, 0, 1.0]])
    )

    def __post_init__(self) -> None:
        if self.beams < 1 or self.azimuth_step_deg <= 0 or self.max_range_m <= 0:
            raise ValueError(
                f"lidar {self.name}: beams must be >= 1, azimuth_step_deg and max_range_m > 0, got {self.beams}, "
                f"{self.azimuth_step_deg}, {self.max_range_m}"
            )
        if not 0 < self.sector_deg < 180:
            raise ValueError(f"lidar {self.name}: sector_deg must lie in (0, 180), got {self.sector_deg}")

    def directions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit beam directions (R,3) in the lidar frame, their ring (R,) and azimuth (R,) in radians."""
        elevation = np.radians(np.linspace(*self.elevation_deg, self.beams))
        azimuth = np.radians(np.arange(0.0, 360.0, self.azimuth_step_deg)) - np.pi
        az, el = np.meshgrid(azimuth, elevation)
        ring = np.broadcast_to(np.arange(self.beams)[:, None], az.shape)
        dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
        return dirs.reshape(-1, 3), ring.ravel(), az.ravel()


def lidar_sweep(
    world: SyntheticWorld, model: LidarModel, stamp_ns: int, timing: SensorTiming, rng: np.random.Generator
) -> PointSweep:
    """One sweep (points in the lidar frame, fields `intensity` 0-255 and `ring`) at `stamp_ns`."""
    t_s = timing.seconds(stamp_ns)
    T_world_base = world.T_world_base(t_s)
    T_world_lidar = T_world_base @ model.T_base_lidar
    dirs, ring, azimuth = model.directions()
    R = T_world_lidar[:3, :3]
    # azimuth sectors, each bounded by two vertical planes, so that each ray meets only nearby primitives
    edges = np.radians(np.arange(-180.0, 180.0 + model.sector_deg, model.sector_deg))
    sector = np.clip(np.searchsorted(edges, azimuth, side="right") - 1, 0, len(edges) - 2)
    lo, hi = edges[:-1], edges[1:]
    zero = np.zeros_like(lo)
    inward = np.stack([np.stack([-np.sin(lo), np.cos(lo), zero], -1), np.stack([np.sin(hi), -np.cos(hi), zero], -1)], 1)
    planes = inward @ R.T
    scene = world.scene_at(t_s)
    d_world = torch.as_tensor(dirs @ R.T, dtype=torch.float32)
    bundles = RayBundles(torch.as_tensor(sector), planes)
    hits = cast_rays(scene, T_world_lidar[:3, 3], d_world, model.max_range_m, bundles)
    hit = hits.hit.numpy()
    rng_noise = rng.normal(0.0, model.range_noise_m, hit.sum())
    distance = hits.t.numpy()[hit].astype(np.float64) + rng_noise
    points = dirs[hit] * distance[:, None]
    reflectance = albedo(hits, scene).mean(1).numpy()[hit]
    incidence = np.abs(np.einsum("ij,ij->i", hits.normal.numpy()[hit], d_world.numpy()[hit]))
    intensity = np.clip(255.0 * reflectance * (0.3 + 0.7 * incidence), 0, 255).astype(np.float32)
    return PointSweep(
        model.name,
        int(stamp_ns),
        points,
        {"intensity": intensity, "ring": ring[hit].astype(np.float32)},
        T_world_base,
        model.T_base_lidar,
    )


# nuScenes dyn_prop codes used here
MOVING, STATIONARY, ONCOMING = 0, 1, 2


@dataclass(frozen=True)
class RadarModel:
    """A 77 GHz automotive radar (ARS408-like): sparse, noisy, with Doppler velocity, clutter and misses.

    Candidate returns are rays cast over the field of view; each object gives at most
    `returns_per_object` of them, each detected with a probability falling with range and for
    weak reflectors. Positions are reported in the radar's horizontal plane (z = 0), as nuScenes
    does. Velocities are the radial (Doppler) component along the line of sight, raw (relative
    to the moving sensor) and ego-motion compensated.
    """

    fov_deg: float = 120.0
    max_range_m: float = 150.0
    azimuth_step_deg: float = 0.5
    elevations_deg: tuple[float, ...] = (0.0, 2.0)
    range_noise_m: float = 0.15
    azimuth_noise_deg: float = 0.3
    velocity_noise_mps: float = 0.1
    rcs_noise_db: float = 3.0
    detection_probability: float = 0.9
    returns_per_object: int = 4
    clutter_per_sweep: float = 6.0
    max_points: int = 125
    stationary_below_mps: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.fov_deg < 180 or self.max_range_m <= 0 or self.azimuth_step_deg <= 0:
            raise ValueError(
                f"radar model: fov_deg must lie in (0, 180), max_range_m and azimuth_step_deg be > 0, got "
                f"{self.fov_deg}, {self.max_range_m}, {self.azimuth_step_deg}"
            )
        if self.max_points < 1 or self.returns_per_object < 1:
            raise ValueError(
                f"radar model: max_points and returns_per_object must be >= 1, got {self.max_points}, "
                f"{self.returns_per_object}"
            )

    def directions(self) -> np.ndarray:
        """Unit candidate ray directions (R,3) in the radar frame (x forward, y left, z up)."""
        half = self.fov_deg / 2
        azimuth = np.radians(np.arange(-half, half + 1e-9, self.azimuth_step_deg))
        az, el = np.meshgrid(azimuth, np.radians(np.asarray(self.elevations_deg, dtype=np.float64)))
        return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)


@dataclass
class RadarReturns:
    """A simulated sweep with the truth behind it: `object_id` -1 and NaN `true_points` mark clutter."""

    sweep: PointSweep
    true_points: np.ndarray
    object_id: np.ndarray


def _pick_returns(hits: RayHits, model: RadarModel, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Rays that make detections: a few per object, picked at random, kept with the detection probability.

    Returns the ray indices, their object ids, distances and true RCS (dBsm).
    """
    material = hits.material.numpy()
    candidate = np.flatnonzero((material != GROUND) & (material != SKY))
    object_id = hits.object_id.numpy()[candidate]
    order = np.lexsort((rng.random(len(candidate)), object_id))
    candidate, object_id = candidate[order], object_id[order]
    first = np.r_[0, np.flatnonzero(np.diff(object_id)) + 1]
    rank = np.arange(len(candidate)) - np.repeat(first, np.diff(np.r_[first, len(candidate)]))
    keep = rank < model.returns_per_object
    candidate, object_id = candidate[keep], object_id[keep]
    distance = hits.t.numpy()[candidate].astype(np.float64)
    rcs_true = np.array([RCS_DBSM[m] for m in material[candidate]], dtype=np.float64)
    strength = np.clip((rcs_true + 15.0) / 25.0, 0.2, 1.0)
    p_detect = model.detection_probability * strength * (1.0 - (distance / model.max_range_m) ** 4)
    detected = rng.random(len(candidate)) < p_detect
    return candidate[detected], object_id[detected], distance[detected], rcs_true[detected]


def radar_sweep(
    world: SyntheticWorld,
    radar: Radar,
    model: RadarModel,
    stamp_ns: int,
    timing: SensorTiming,
    rng: np.random.Generator,
) -> RadarReturns:
    """One radar sweep at `stamp_ns`: points in the radar frame, nuScenes field names."""
    t_s = timing.seconds(stamp_ns)
    T_world_base = world.T_world_base(t_s)
    T_world_radar = T_world_base @ radar.T_base_radar
    R = T_world_radar[:3, :3]
    scene = world.scene_at(t_s)
    dirs = model.directions()
    hits = cast_rays(scene, T_world_radar[:3, 3], torch.as_tensor(dirs @ R.T, dtype=torch.float32), model.max_range_m)
    candidate, object_id, distance, rcs_true = _pick_returns(hits, model, rng)
    true_points = dirs[candidate] * distance[:, None]

    n_clutter = int(rng.poisson(model.clutter_per_sweep))
    half = np.radians(model.fov_deg / 2)
    clutter_az = rng.uniform(-half, half, n_clutter)
    clutter_range = rng.uniform(1.0, model.max_range_m, n_clutter)
    clutter_dirs = np.stack([np.cos(clutter_az), np.sin(clutter_az), np.zeros(n_clutter)], -1)
    los = np.concatenate([dirs[candidate], clutter_dirs])  # unit line of sight, radar frame
    n = len(los)

    # Doppler: object velocity along the line of sight, minus the sensor's own (ego translation + yaw rate)
    _, _, v_ego, yaw_rate = world.ego_state(t_s)
    v_sensor = v_ego + np.cross([0.0, 0.0, yaw_rate], T_world_base[:3, :3] @ radar.T_base_radar[:3, 3])
    v_object = np.concatenate([_hit_velocity(scene, hits)[candidate], np.zeros((n_clutter, 3))])
    los_world = los @ R.T
    noise = rng.normal(0.0, model.velocity_noise_mps, n)
    radial_comp = np.einsum("ij,ij->i", v_object, los_world) + noise
    radial_raw = radial_comp - los_world @ v_sensor

    horizontal = np.concatenate([np.hypot(true_points[:, 0], true_points[:, 1]), clutter_range])
    measured_range = horizontal + rng.normal(0.0, model.range_noise_m, n)
    measured_az = np.arctan2(los[:, 1], los[:, 0]) + rng.normal(0.0, np.radians(model.azimuth_noise_deg), n)
    points = np.stack([measured_range * np.cos(measured_az), measured_range * np.sin(measured_az), np.zeros(n)], -1)
    rcs = np.concatenate([rcs_true, rng.normal(-5.0, 4.0, n_clutter)]) + rng.normal(0, model.rcs_noise_db, n)
    dyn_prop = np.where(
        np.abs(radial_comp) < model.stationary_below_mps, STATIONARY, np.where(radial_comp < 0, ONCOMING, MOVING)
    )
    truth = np.concatenate([true_points, np.full((n_clutter, 3), np.nan)])
    ids = np.concatenate([object_id, np.full(n_clutter, -1)])

    # the sensor reports at most max_points returns, nearest first; velocities as vectors along the line of sight
    keep = np.argsort(measured_range, kind="stable")[: model.max_points]
    los_xy = los[keep, :2]
    fields = {
        "dyn_prop": dyn_prop[keep],
        "id": np.arange(len(keep)),
        "rcs": rcs[keep],
        "vx": radial_raw[keep] * los_xy[:, 0],
        "vy": radial_raw[keep] * los_xy[:, 1],
        "vx_comp": radial_comp[keep] * los_xy[:, 0],
        "vy_comp": radial_comp[keep] * los_xy[:, 1],
    }
    fields = {name: column.astype(np.float32) for name, column in fields.items()}
    sweep = PointSweep(radar.name, int(stamp_ns), points[keep], fields, T_world_base)
    return RadarReturns(sweep, truth[keep], ids[keep])
