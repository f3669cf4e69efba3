"""A procedural street, deterministic from a seed: the scene every synthetic sensor looks at.

The world is made of analytic primitives only (one ground plane, yaw-rotated boxes and vertical
cylinders) so that cameras, lidar and radar can ray-cast it exactly and depth ground truth has no
discretisation error. The street runs along world +x: the ego drives in the inner right-hand lane
with a gentle lateral weave (so that its pose also rotates), other vehicles keep constant lane
speeds, pedestrians walk the sidewalks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

# Material codes shared by the ray caster, the textures and the radar/lidar models.
SKY, GROUND, BUILDING, VEHICLE, GLASS, POLE, PEDESTRIAN, TRUNK, FOLIAGE = -1, 0, 1, 2, 3, 4, 5, 6, 7

# Radar cross-section (dBsm) of each material; radar sees metal and walls, hardly people or leaves.
RCS_DBSM = {BUILDING: 18.0, VEHICLE: 10.0, GLASS: 6.0, POLE: 4.0, PEDESTRIAN: -8.0, TRUNK: -3.0, FOLIAGE: -6.0}


@dataclass(frozen=True)
class StreetLayout:
    """Cross-section of the street (metres, measured from the centre line, y to the left)."""

    lane_width: float = 3.5
    lanes_per_direction: int = 2
    parking_width: float = 2.5
    curb_width: float = 0.25
    sidewalk_width: float = 3.5

    @property
    def road_half_width(self) -> float:
        return self.lanes_per_direction * self.lane_width + self.parking_width

    @property
    def sidewalk_inner(self) -> float:
        return self.road_half_width + self.curb_width

    @property
    def sidewalk_outer(self) -> float:
        return self.sidewalk_inner + self.sidewalk_width

    def lane_center(self, lane: int) -> float:
        """y of lane `lane` (0 = innermost); negative lanes run +x (right-hand traffic), positive -x."""
        return -(abs(lane) + 0.5) * self.lane_width if lane >= 0 else (abs(lane) - 0.5) * self.lane_width


@dataclass
class Primitives:
    """Boxes (B) and vertical cylinders (C) with their motion, material and per-object look.

    Boxes: `center` (B,3) world, `half` (B,3) half extents in the box frame, `yaw` (B,).
    Cylinders: `center` (C,3) with z the bottom, `half` (C,3) = (radius, radius, height).
    `velocity` (n,3) world m/s (constant), `material` (n,) codes above, `color` (n,3) linear RGB
    albedo, `style` (n,4) free texture parameters, `object_id` (n,) groups parts of one object.
    """

    center: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray
    material: np.ndarray
    color: np.ndarray
    style: np.ndarray
    object_id: np.ndarray

    def __len__(self) -> int:
        return len(self.center)

    def at(self, t_s: float) -> Primitives:
        """The same primitives moved to time `t_s` (seconds since the world's start)."""
        return replace(self, center=self.center + self.velocity * t_s)

    def subset(self, mask: np.ndarray) -> Primitives:
        return Primitives(*(getattr(self, name)[mask] for name in _FIELDS))

    def bounding_spheres(self, is_cylinder: bool) -> tuple[np.ndarray, np.ndarray]:
        """Centres (n,3) and radii (n,) of spheres enclosing each primitive, for culling."""
        if is_cylinder:
            centers = self.center.copy()
            centers[:, 2] += self.half[:, 2] / 2
            radii = np.hypot(self.half[:, 0], self.half[:, 2] / 2)
            return centers, radii
        return self.center, np.linalg.norm(self.half, axis=1)


_FIELDS = ("center", "half", "yaw", "velocity", "material", "color", "style", "object_id")


class _PrimitiveList:
    """Accumulates primitives while the world is laid out."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(
        self,
        center: Sequence[float],
        half: Sequence[float],
        material: int,
        color: Sequence[float],
        object_id: int,
        yaw: float = 0.0,
        velocity: Sequence[float] = (0.0, 0.0, 0.0),
        style: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    ) -> None:
        self.rows.append((center, half, yaw, velocity, material, color, style, object_id))

    def build(self) -> Primitives:
        cols = list(zip(*self.rows, strict=True)) or [()] * len(_FIELDS)
        return Primitives(
            center=np.asarray(cols[0], np.float64).reshape(-1, 3),
            half=np.asarray(cols[1], np.float64).reshape(-1, 3),
            yaw=np.asarray(cols[2], np.float64),
            velocity=np.asarray(cols[3], np.float64).reshape(-1, 3),
            material=np.asarray(cols[4], np.int64),
            color=np.asarray(cols[5], np.float64).reshape(-1, 3),
            style=np.asarray(cols[6], np.float64).reshape(-1, 4),
            object_id=np.asarray(cols[7], np.int64),
        )


@dataclass
class Scene:
    """Everything at one instant: the primitives where they are at that time."""

    boxes: Primitives
    cylinders: Primitives
    layout: StreetLayout
    seed: int


_FACADES = np.array(
    [
        [0.62, 0.52, 0.42],
        [0.55, 0.32, 0.25],
        [0.75, 0.72, 0.64],
        [0.45, 0.47, 0.5],
        [0.8, 0.66, 0.45],
        [0.38, 0.36, 0.33],
        [0.66, 0.6, 0.55],
        [0.5, 0.55, 0.45],
    ]
)
_CAR_PAINT = np.array(
    [
        [0.7, 0.05, 0.04],
        [0.05, 0.12, 0.45],
        [0.8, 0.8, 0.8],
        [0.05, 0.05, 0.05],
        [0.45, 0.46, 0.48],
        [0.12, 0.3, 0.12],
        [0.85, 0.6, 0.1],
        [0.25, 0.4, 0.65],
    ]
)


@dataclass
class SyntheticWorld:
    """A street laid out from `seed`, long enough for the ego to drive it for `duration_s` at `ego_speed_mps`.

    Traffic is spread so that the street stays busy for that long. Times are seconds since the
    world's start (the ego is at x = 0 at t = 0); a standing ego (speed 0) does not weave.
    """

    seed: int
    duration_s: float = 30.0
    ego_speed_mps: float = 8.0
    layout: StreetLayout = field(default_factory=StreetLayout)
    weave_amplitude_m: float = 0.4
    weave_period_s: float = 9.0
    traffic_density: float = 1.0

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.ego_speed_mps < 0:
            raise ValueError(
                f"synthetic world: duration_s must be > 0 and ego_speed_mps >= 0, got {self.duration_s}, "
                f"{self.ego_speed_mps}"
            )
        rng = np.random.default_rng([self.seed, 0x5EED])
        self._x_min = -150.0
        self._x_max = self.ego_speed_mps * self.duration_s + 250.0
        boxes, cylinders = _PrimitiveList(), _PrimitiveList()
        self._next_id = 0
        self._lay_buildings(rng, boxes)
        self._lay_vehicles(rng, boxes)
        self._lay_street_furniture(rng, cylinders)
        self._lay_pedestrians(rng, cylinders)
        self.boxes = boxes.build()
        self.cylinders = cylinders.build()

    # ---- ego motion -------------------------------------------------------------------------
    def ego_state(self, t_s: float) -> tuple[np.ndarray, float, np.ndarray, float]:
        """Ego position (3,), yaw (rad), world velocity (3,) and yaw rate (rad/s) at time `t_s`."""
        w = 2 * np.pi / self.weave_period_s
        v = self.ego_speed_mps
        a = self.weave_amplitude_m if v > 0 else 0.0
        y = self.layout.lane_center(0) + a * np.sin(w * t_s)
        dy = a * w * np.cos(w * t_s)
        ddy = -a * w * w * np.sin(w * t_s)
        yaw = float(np.arctan2(dy, v))
        yaw_rate = float(v * ddy / (v * v + dy * dy)) if v > 0 else 0.0
        return np.array([v * t_s, y, 0.0]), yaw, np.array([v, dy, 0.0]), yaw_rate

    def T_world_base(self, t_s: float) -> np.ndarray:
        """Ego pose at `t_s`: maps base-frame points (x forward, y left, z up, z = 0 on the road) to world."""
        position, yaw, _, _ = self.ego_state(t_s)
        c, s = np.cos(yaw), np.sin(yaw)
        T = np.eye(4)
        T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        T[:3, 3] = position
        return T

    def scene_at(self, t_s: float) -> Scene:
        return Scene(self.boxes.at(t_s), self.cylinders.at(t_s), self.layout, self.seed)

    # ---- layout -----------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _lay_buildings(self, rng: np.random.Generator, boxes: _PrimitiveList) -> None:
        front = self.layout.sidewalk_outer + 0.5
        for side in (-1.0, 1.0):
            x = self._x_min
            while x < self._x_max:
                width = rng.uniform(8.0, 26.0)
                depth = rng.uniform(10.0, 20.0)
                height = rng.uniform(6.0, 30.0)
                setback = rng.uniform(0.0, 3.0)
                color = _FACADES[rng.integers(len(_FACADES))] * rng.uniform(0.85, 1.15, 3)
                # style: window spacing, floor height, window fill ratio, glass tint
                style = (rng.uniform(2.2, 3.6), rng.uniform(2.9, 3.6), rng.uniform(0.35, 0.7), rng.uniform(0, 1))
                y = side * (front + setback + depth / 2)
                boxes.add(
                    (x + width / 2, y, height / 2),
                    (width / 2, depth / 2, height / 2),
                    BUILDING,
                    np.clip(color, 0, 1),
                    self._new_id(),
                    style=style,
                )
                x += width + rng.uniform(0.0, 5.0)

    def _add_car(
        self, boxes: _PrimitiveList, rng: np.random.Generator, x: float, y: float, yaw: float, speed: float
    ) -> None:
        length, width = rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.95)
        body_h, cabin_h = rng.uniform(0.65, 0.85), rng.uniform(0.5, 0.7)
        color = _CAR_PAINT[rng.integers(len(_CAR_PAINT))]
        velocity = (speed * np.cos(yaw), speed * np.sin(yaw), 0.0)
        oid = self._new_id()
        style = (length, 0.0, 0.0, 0.0)
        boxes.add(
            (x, y, 0.2 + body_h / 2), (length / 2, width / 2, body_h / 2), VEHICLE, color, oid, yaw, velocity, style
        )
        # the cabin sits a little behind the centre
        back = -0.12 * length
        cx, cy = x + back * np.cos(yaw), y + back * np.sin(yaw)
        boxes.add(
            (cx, cy, 0.2 + body_h + cabin_h / 2),
            (0.28 * length, width / 2 - 0.08, cabin_h / 2),
            GLASS,
            color,
            oid,
            yaw,
            velocity,
            style,
        )

    def _lay_vehicles(self, rng: np.random.Generator, boxes: _PrimitiveList) -> None:
        lay, v_ego = self.layout, self.ego_speed_mps
        # A lead and a following car share the ego's lane and speed: always a radar target ahead and behind.
        self._add_car(boxes, rng, rng.uniform(14.0, 24.0), lay.lane_center(0), 0.0, v_ego)
        self._add_car(boxes, rng, -rng.uniform(12.0, 20.0), lay.lane_center(0), 0.0, v_ego)
        for lane in range(-lay.lanes_per_direction, lay.lanes_per_direction):
            if lane == 0:
                continue
            forward = lane >= 0
            speed = rng.uniform(0.6, 1.4) * max(v_ego, 5.0)
            # spread cars over the stretch they will pass through while the ego drives
            reach = speed * self.duration_s
            start = self._x_min - (reach if forward else 0.0)
            stop = self._x_max + (0.0 if forward else reach)
            x = start + rng.uniform(0, 20)
            while x < stop:
                self._add_car(boxes, rng, x, lay.lane_center(lane), 0.0 if forward else np.pi, speed)
                x += rng.uniform(15.0, 60.0) / max(self.traffic_density, 1e-3)
        y_park = lay.road_half_width - lay.parking_width / 2
        x = self._x_min
        while x < self._x_max:
            for side in (-1.0, 1.0):
                if rng.uniform() < 0.55 * min(self.traffic_density, 1.5):
                    yaw = (0.0 if side < 0 else np.pi) + rng.normal(0, 0.03)
                    self._add_car(boxes, rng, x + rng.uniform(-0.5, 0.5), side * y_park, yaw, 0.0)
            x += 6.0

    def _lay_street_furniture(self, rng: np.random.Generator, cylinders: _PrimitiveList) -> None:
        lay = self.layout
        for side in (-1.0, 1.0):
            x = self._x_min + rng.uniform(0, 10)
            while x < self._x_max:
                height = rng.uniform(5.5, 8.0)
                grey = rng.uniform(0.35, 0.6)
                cylinders.add(
                    (x, side * (lay.sidewalk_inner + 0.6), 0.0),
                    (0.09, 0.09, height),
                    POLE,
                    (grey, grey, grey * 1.05),
                    self._new_id(),
                )
                x += rng.uniform(18.0, 32.0)
            x = self._x_min + rng.uniform(0, 15)
            while x < self._x_max:
                y = side * (lay.sidewalk_outer - rng.uniform(1.0, 1.6))
                trunk_h, crown_r, crown_h = rng.uniform(2.0, 3.0), rng.uniform(1.0, 1.8), rng.uniform(2.0, 4.0)
                oid = self._new_id()
                cylinders.add((x, y, 0.0), (0.18, 0.18, trunk_h), TRUNK, (0.3, 0.2, 0.12), oid)
                green = np.array([0.15, 0.35, 0.1]) * rng.uniform(0.7, 1.3, 3)
                cylinders.add((x, y, trunk_h), (crown_r, crown_r, crown_h), FOLIAGE, np.clip(green, 0, 1), oid)
                x += rng.uniform(9.0, 30.0)

    def _lay_pedestrians(self, rng: np.random.Generator, cylinders: _PrimitiveList) -> None:
        lay = self.layout
        count = int(rng.poisson(0.08 * self.traffic_density * (self._x_max - self._x_min)))
        for _ in range(count):
            side = rng.choice([-1.0, 1.0])
            speed = rng.uniform(0.8, 1.6) * rng.choice([-1.0, 1.0])
            x = rng.uniform(self._x_min, self._x_max)
            y = side * rng.uniform(lay.sidewalk_inner + 1.1, lay.sidewalk_outer - 0.4)
            height = rng.uniform(1.5, 1.9)
            shirt = rng.uniform(0.05, 0.9, 3)
            trousers = rng.uniform(0.03, 0.4)
            skin = rng.uniform(0.3, 0.8)
            cylinders.add(
                (x, y, 0.0),
                (0.24, 0.24, height),
                PEDESTRIAN,
                shirt,
                self._new_id(),
                velocity=(speed, 0.0, 0.0),
                style=(trousers, skin, 0.0, 0.0),
            )
