"""CameraInfo checked as a camera model: each way a well-formed message can still be unusable is named."""

import numpy as np
import pytest

from surround_depth_ros.core.camera_model import camera_model_problems

K = [1266.4, 0.0, 816.3, 0.0, 1266.4, 491.5, 0.0, 0.0, 1.0]  # a nuScenes camera, 1600x900
P = np.hstack([np.reshape(K, (3, 3)), np.zeros((3, 1))]).ravel().tolist()
D = [0.0] * 5


def _problems(k=K, p=P, d=D, model="plumb_bob", width=1600, height=900) -> list[str]:  # noqa: ANN001
    return camera_model_problems("CAM_BACK", k, p, d, model, width, height)


def _with(values: list[float], index: int, value: float) -> list[float]:
    changed = list(values)
    changed[index] = value
    return changed


def test_a_calibrated_camera_passes():
    assert _problems() == []
    assert _problems(p=[0.0] * 12) == []  # P unset: only K is used
    assert _problems(d=[], model="") == []
    assert _problems(d=[0.1, -0.2, 0.0, 0.0, 0.01, 0.0, 0.0, 0.0], model="rational_polynomial") == []
    assert _problems(d=[0.1, 0.01, 0.0, 0.0], model="equidistant") == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"k": [0.0] * 9}, "CAM_BACK: camera_info K is all zero (uncalibrated camera)"),
        ({"k": _with(K, 4, 0.0)}, "CAM_BACK: camera_info K[1,1] (fy) = 0, must be > 0"),
        ({"k": _with(K, 0, -1266.0)}, "CAM_BACK: camera_info K[0,0] (fx) = -1266, must be > 0"),
        ({"k": _with(K, 8, 0.0)}, "CAM_BACK: camera_info K[2,2] = 0, must be 1"),
        ({"k": _with(K, 7, 3.0)}, "CAM_BACK: camera_info K[2,1] = 3, must be 0"),
        ({"k": _with(K, 2, 1700.0)}, "CAM_BACK: camera_info K principal point (1700, "),
        ({"k": _with(K, 5, -5.0)}, "lies outside the 1600x900 image"),
        ({"k": _with(K, 0, float("nan"))}, "CAM_BACK: camera_info K has non-finite values"),
        ({"p": _with(P, 0, float("inf"))}, "CAM_BACK: camera_info P has non-finite values"),
        ({"d": [float("nan")] * 5}, "CAM_BACK: camera_info D has non-finite values"),
        ({"p": _with(P, 5, 0.0)}, "CAM_BACK: camera_info P[1,1] (fy) = 0, must be > 0"),
        ({"p": _with(P, 10, 0.0)}, "CAM_BACK: camera_info P[2,2] = 0, must be 1"),
        ({"p": _with(P, 11, 2.0)}, "CAM_BACK: camera_info P[2,3] = 2, expected 0"),
        ({"p": _with(P, 0, 5 * K[0])}, "P has fx = 6332 but K has 1266.4: P and K must describe the same camera"),
        ({"model": "kannala_brandt"}, "distortion model 'kannala_brandt' is not supported"),
        ({"d": [0.0] * 3}, "distortion model 'plumb_bob' takes 5 coefficients, D has 3"),
        ({"k": K[:6]}, "camera_info has 6 values in K and 12 in P, expected 9 and 12"),
        ({"width": 0}, "CAM_BACK: camera_info size is 0x900"),
    ],
)
def test_each_bad_model_is_named(change, problem):
    problems = _problems(**change)
    assert any(problem in p for p in problems), problems


def test_zero_k_with_a_valid_p_is_refused():
    """The case that passed the node's old check (fx taken from P) and broke every frame set."""
    problems = _problems(k=[0.0] * 9)
    assert problems == ["CAM_BACK: camera_info K is all zero (uncalibrated camera); calibrate it and publish K"]


def test_every_problem_is_listed_at_once():
    problems = _problems(k=_with(_with(K, 4, 0.0), 8, 2.0), model="fisheye")
    assert len(problems) == 3, problems


def test_absurd_focal_lengths_are_named_without_a_numpy_warning():
    """The fuzz suite's CameraInfo with fx = 1e-300 in K and 1e300 in P printed an overflow warning to the log."""
    import warnings

    K = [1e-300, 0, 5, 0, 1, 5, 0, 0, 1]
    P = [1e300, 0, 5, 0, 0, 1, 5, 0, 0, 0, 1, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        problems = camera_model_problems("CAM", K, P, [0.0] * 5, "plumb_bob", 10, 10)
    assert any("P has fx = 1e+300 but K has 1e-300" in p for p in problems)
