"""Which trained slot each live camera takes: cameras bound to the model by where they look, not by list order.

A checkpoint holds, per slot, a learned camera embedding, the training intrinsics and the rig's
adjacency. Feeding the same six cameras in another order silently costs accuracy (a DDAD rig in
its numeric order: AbsRel 0.458 instead of 0.428), yet TF tells where each live camera looks. So
each live camera is matched to the slot whose trained camera points the same way: the smallest
total yaw difference of the optical axes in the base frame, with position as the tie-breaker,
over all assignments (a rig has a handful of cameras). A camera more than `max_yaw_deg` from
every free slot cannot be matched: that is an error the user must see, not a guess.

The binding also says which slots cross-view attention pairs (`DepthEngine.set_adjacency`):
live cameras by how their live views overlap, slots without a live camera by the training
rig's pairs, since their placeholders stand in for the training cameras. Pairing only the live
cameras left the DDAD sample's three cameras with one neighbour each where the network was
trained with two, and cost AbsRel 0.461 -> 0.492 (docs/rig_and_geometry.md).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from surround_depth_ros.sensors.rig import CameraRig


class BindingError(ValueError):
    """The live rig cannot be matched to the model's slots; the message says which camera and why."""


def viewing_yaw(T_base_cam: np.ndarray) -> float:
    """Yaw (radians, about the base z axis) of the optical axis (the optical frame's z) in the base frame."""
    axis = np.asarray(T_base_cam, dtype=np.float64)[:3, 2]
    return math.atan2(axis[1], axis[0])


def _yaw_gap(a: float, b: float) -> float:
    return abs(math.remainder(a - b, math.tau))


@dataclass(frozen=True)
class Binding:
    """`slots[i]` is the trained slot of live camera i; `adjacency` the slot pairs the network's cross-view
    attention should use (live cameras' overlaps, and the training rig's pairs of the slots left empty)."""

    slots: tuple[int, ...]
    names: tuple[str, ...]
    yaw_error_deg: tuple[float, ...]
    adjacency: tuple[tuple[int, int], ...]

    def describe(self, trained_names: list[str]) -> str:
        """One log line: live camera -> trained slot (name, yaw difference)."""
        return ", ".join(
            f"{name} -> slot {slot} ({trained_names[slot]}, {error:.1f} deg)"
            for name, slot, error in zip(self.names, self.slots, self.yaw_error_deg, strict=True)
        )


def bind_cameras(
    live: CameraRig,
    trained: CameraRig,
    max_yaw_deg: float = 30.0,
    trained_adjacency: list[tuple[int, int]] | None = None,
) -> Binding:
    """Match every live camera to a distinct trained slot by viewing direction (then position).

    `trained_adjacency` (the checkpoint's pairs) defaults to the training rig's overlaps.
    """
    n_live, n_slots = len(live.cameras), len(trained.cameras)
    if n_live > n_slots:
        raise BindingError(
            f"the node has {n_live} cameras {live.camera_names} but the model was trained for {n_slots} "
            f"{trained.camera_names}: list at most {n_slots} cameras"
        )
    live_yaw = [viewing_yaw(c.T_base_cam) for c in live.cameras]
    slot_yaw = [viewing_yaw(c.T_base_cam) for c in trained.cameras]
    live_xy = [c.T_base_cam[:2, 3] for c in live.cameras]
    slot_xy = [c.T_base_cam[:2, 3] for c in trained.cameras]
    yaw_cost = np.array([[_yaw_gap(a, b) for b in slot_yaw] for a in live_yaw])
    # Position only breaks ties between slots that look the same way: 1 m counts like 0.01 rad.
    cost = yaw_cost + 0.01 * np.array([[np.linalg.norm(a - b) for b in slot_xy] for a in live_xy])
    best = min(itertools.permutations(range(n_slots), n_live), key=lambda p: cost[range(n_live), p].sum())
    errors = [math.degrees(yaw_cost[i, slot]) for i, slot in enumerate(best)]
    for i, (slot, error) in enumerate(zip(best, errors, strict=True)):
        if error > max_yaw_deg:
            raise BindingError(
                f"camera {live.cameras[i].name} looks {math.degrees(live_yaw[i]):.0f} deg from the base x axis; the "
                f"nearest free trained camera ({trained.cameras[slot].name}) looks {math.degrees(slot_yaw[slot]):.0f} "
                f"deg: no trained camera points within {max_yaw_deg:.0f} deg of it. Check its TF (base -> optical "
                "frame) or use a model trained for this rig"
            )
    pairs = {(min(best[i], best[j]), max(best[i], best[j])) for i, j in live.adjacency()}
    bound = set(best)
    trained_pairs = trained.adjacency() if trained_adjacency is None else trained_adjacency
    pairs |= {(min(i, j), max(i, j)) for i, j in trained_pairs if i not in bound or j not in bound}
    return Binding(tuple(best), tuple(live.camera_names), tuple(errors), tuple(sorted(pairs)))
