"""Sensor messages of the bag layout built from and read into numpy, for any message class set.

The bag writer uses rosbags' classes (ROS-free) and the node uses rclpy's; both have the same
field names, so one implementation serves both. The only difference, how a uint8[] field takes
bytes (rosbags: a numpy view, rclpy: an `array.array` it keeps as is), is a constructor argument.
Big payloads (images, clouds) are handed over as views of the caller's contiguous array: the
message classes make at most the one copy they need to own the bytes.
Reading only touches attributes, so the readers are plain functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from surround_depth_ros.base import geometry
from surround_depth_ros.base.images import decode_rgb, encode_rgb
from surround_depth_ros.sensors import pointcloud
from surround_depth_ros.sensors.rig import Camera

NS = 1_000_000_000
DEPTH_ENCODINGS = ("32FC1", "16UC1")


class MessageKit:
    """Builds Image, CameraInfo, PointCloud2, TransformStamped, TFMessage and Clock messages.

    `message_class("sensor_msgs/msg/Image")` returns the class to instantiate; `byte_field(buffer)`
    turns a bytes-like buffer into what the classes' uint8[] fields accept; `payload_options` are
    extra constructor arguments for the messages that carry one (rclpy's `check_fields=True` makes
    its setter keep an `array.array` instead of copying it once more).
    """

    def __init__(
        self,
        message_class: Callable[[str], type],
        byte_field: Callable[[memoryview | bytes], Any],
        payload_options: dict[str, Any] | None = None,
    ) -> None:
        self._cls = message_class
        self._bytes = byte_field
        self._payload_options = payload_options or {}

    def time(self, stamp_ns: int) -> Any:
        sec, nanosec = divmod(int(stamp_ns), NS)
        return self._cls("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        return self._cls("std_msgs/msg/Header")(stamp=self.time(stamp_ns), frame_id=frame_id)

    def image(self, rgb: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8") -> Any:
        """An H x W x 3 RGB image as sensor_msgs/Image in `encoding` (rgb8, bgr8, mono8)."""
        height, width, step, data = encode_rgb(rgb, encoding)
        return self._image(height, width, step, data, stamp_ns, frame_id, encoding)

    def image_array(self, array: np.ndarray, stamp_ns: int, frame_id: str, encoding: str) -> Any:
        """An Image of an (H, W) or (H, W, C) array already in `encoding` (32FC1 depth, 16UC1 millimetres, ...).

        The message takes the array's bytes with one copy (none more when it is C-contiguous).
        """
        if array.ndim not in (2, 3):
            raise ValueError(f"an Image holds an (H, W) or (H, W, C) array, got shape {array.shape}")
        array = np.ascontiguousarray(array)
        height, width = array.shape[:2]
        step = array.strides[0]
        return self._image(height, width, step, memoryview(array).cast("B"), stamp_ns, frame_id, encoding)

    def _image(
        self, height: int, width: int, step: int, data: memoryview | bytes, stamp_ns: int, frame_id: str, encoding: str
    ) -> Any:
        return self._cls("sensor_msgs/msg/Image")(
            header=self.header(stamp_ns, frame_id),
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=0,
            step=step,
            data=self._bytes(data),
            **self._payload_options,
        )

    def compressed_image(self, rgb: np.ndarray, stamp_ns: int, frame_id: str, fmt: str = "png") -> Any:
        """An H x W x 3 RGB image as sensor_msgs/CompressedImage, `fmt` "png" (lossless) or "jpeg" (quality 95)."""
        import cv2

        options = [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == "jpeg" else []
        ok, data = cv2.imencode(f".{fmt}", np.ascontiguousarray(rgb[..., ::-1]), options)
        if not ok:
            raise ValueError(f"cannot encode a {rgb.shape} image as {fmt}")
        return self._cls("sensor_msgs/msg/CompressedImage")(
            header=self.header(stamp_ns, frame_id),
            format=fmt,
            data=self._bytes(memoryview(data).cast("B")),
            **self._payload_options,
        )

    def depth_image(self, depth: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "32FC1") -> Any:
        """REP 118 depth of an (H, W) map in metres: 32FC1 metres (NaN = no estimate) or 16UC1 millimetres (0)."""
        return self.image_array(depth_array(depth, encoding), stamp_ns, frame_id, encoding)

    def camera_info_copy(self, info: Any, stamp_ns: int, frame_id: str, maps: Camera | None = None) -> Any:
        """A CameraInfo (of any message class) with a new header: the camera model a depth image republishes.

        With `maps` (the camera the depth is at, `DepthOutputs.cameras[i]`) of another size than the info's, K
        and P describe the maps (REP 118 depth at the network's resolution, resized or placed inside a border:
        `geometry.calibration_for_maps`)."""
        k, p = info.k, info.p
        width, height = (info.width, info.height) if maps is None else (maps.width, maps.height)
        if (width, height) != (info.width, info.height):
            k, p = geometry.calibration_for_maps(info.k, info.p, maps.K)
        return self._cls("sensor_msgs/msg/CameraInfo")(
            header=self.header(stamp_ns, frame_id),
            height=height,
            width=width,
            distortion_model=info.distortion_model,
            d=info.d,
            k=k,
            r=info.r,
            p=p,
            binning_x=info.binning_x,
            binning_y=info.binning_y,
            roi=info.roi,
        )

    def camera_info(self, camera: Camera, stamp_ns: int) -> Any:
        """Plumb-bob CameraInfo with zero distortion, R = I and P = [K | 0] (the images are rectified)."""
        P = np.zeros((3, 4))
        P[:, :3] = camera.K
        roi = self._cls("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self._cls("sensor_msgs/msg/CameraInfo")(
            header=self.header(stamp_ns, camera.frame_id),
            height=camera.height,
            width=camera.width,
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=camera.K.reshape(-1).astype(np.float64),
            r=np.eye(3).reshape(-1),
            p=P.reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )

    def point_cloud(self, points: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
        """An unorganized PointCloud2 (height 1) holding a structured array's fields and bytes.

        The fused depth cloud's points are `pointcloud.FUSED_CLOUD_DTYPE` (24 bytes: x y z rgb as
        float32, camera uint8 + 3 bytes padding, confidence float32); the message takes the array's
        bytes with one copy.
        """
        fields, point_step, data = pointcloud.array_to_cloud(points)
        field_class = self._cls("sensor_msgs/msg/PointField")
        return self._cls("sensor_msgs/msg/PointCloud2")(
            header=self.header(stamp_ns, frame_id),
            height=1,
            width=len(points),
            fields=[field_class(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in fields],
            is_bigendian=False,
            point_step=point_step,
            row_step=point_step * len(points),
            data=self._bytes(data),
            is_dense=True,
            **self._payload_options,
        )

    def transform(self, T_parent_child: np.ndarray, parent: str, child: str, stamp_ns: int) -> Any:
        """TransformStamped mapping points of `child` into `parent` (the tf convention)."""
        w, x, y, z = geometry.matrix_to_quaternion(T_parent_child[:3, :3])
        tx, ty, tz = (float(v) for v in T_parent_child[:3, 3])
        transform = self._cls("geometry_msgs/msg/Transform")(
            translation=self._cls("geometry_msgs/msg/Vector3")(x=tx, y=ty, z=tz),
            rotation=self._cls("geometry_msgs/msg/Quaternion")(x=x, y=y, z=z, w=w),
        )
        return self._cls("geometry_msgs/msg/TransformStamped")(
            header=self.header(stamp_ns, parent), child_frame_id=child, transform=transform
        )

    def tf_message(self, transforms: list[Any]) -> Any:
        return self._cls("tf2_msgs/msg/TFMessage")(transforms=transforms)

    def clock(self, stamp_ns: int) -> Any:
        return self._cls("rosgraph_msgs/msg/Clock")(clock=self.time(stamp_ns))


def depth_array(depth: np.ndarray, encoding: str) -> np.ndarray:
    """Metres (NaN = no estimate) as REP 118 `encoding`: float32 metres, or uint16 millimetres with 0 for none."""
    if encoding == "16UC1":
        millimetres = np.where(np.isfinite(depth), np.rint(depth * 1000.0), 0.0)
        return np.clip(millimetres, 0, 65535).astype(np.uint16)
    if encoding == "32FC1":
        return depth.astype(np.float32, copy=False)
    raise ValueError(f"depth encoding {encoding!r}: expected one of {DEPTH_ENCODINGS}")


def stamp_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time."""
    return int(stamp.sec) * NS + int(stamp.nanosec)


def image_rgb(msg: Any) -> np.ndarray:
    """H x W x 3 RGB of an Image message (a view into its buffer when it is rgb8)."""
    return decode_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, is_bigendian=bool(msg.is_bigendian))


def camera_from_info(name: str, msg: Any, T_base_cam: np.ndarray) -> Camera:
    """The rig camera a CameraInfo describes (P's left 3x3 when set, as the images are rectified; else K); checked
    before by `core.ingest.SensorIngest.camera_info`, the one CameraInfo check."""
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    K = P[:, :3] if P[0, 0] > 0 else np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    return Camera(
        name=name, width=msg.width, height=msg.height, K=K, T_base_cam=T_base_cam, frame_id=msg.header.frame_id
    )


def cloud_points(msg: Any) -> np.ndarray:
    """A PointCloud2's points as a structured array viewing its buffer."""
    return pointcloud.cloud_to_array(
        msg.fields, msg.point_step, msg.width, msg.height, msg.row_step, msg.data, bool(msg.is_bigendian)
    )


def transform_matrix(transform: Any) -> np.ndarray:
    """4 x 4 of a geometry_msgs/Transform."""
    q, t = transform.rotation, transform.translation
    return geometry.make_transform(geometry.quaternion_to_matrix(q.w, q.x, q.y, q.z), [t.x, t.y, t.z])
