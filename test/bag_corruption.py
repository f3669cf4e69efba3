"""Damaged copies of a good rosbag2, as hypothesis strategies: what a disk, a recorder or a person does to a bag.

Each strategy draws a `Corruption`, whose `apply(good, folder)` makes the damaged bag from the good ones (an mcap
and a sqlite3 bag of the same frame sets) and returns its folder:

* truncation of the storage file at any offset (0 bytes included);
* bytes flipped, or a span overwritten with noise, anywhere in the storage file;
* metadata.yaml missing, empty, not YAML, of version 99, naming a wrong storage or file, a type it does not hold,
  or with any key removed or any value replaced by a value of another kind;
* a topic recorded with a second connection of another type (images on the lidar topic, clouds on a camera's);
* messages whose CDR is cut short or replaced by noise, rewritten into a bag that is otherwise sound;
* in the sqlite3 bag, rows of garbage: text, numbers or NULL where the data and log times are, topic ids that
  name nothing, rows deleted, a topic's type overwritten.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

STORAGES = ("mcap", "sqlite3")
TYPES = (
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/msg/CameraInfo",
    "sensor_msgs/msg/PointCloud2",
    "tf2_msgs/msg/TFMessage",
    "rosgraph_msgs/msg/Clock",
)


def storage_file(bag: Path) -> Path:
    """The one storage file of a bag written here."""
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def _copy(good: dict[str, Path], storage: str, folder: Path) -> Path:
    bag = folder / "bag"
    shutil.copytree(good[storage], bag)
    return bag


@dataclass
class Corruption:
    """A named damage to one of the good bags; `apply` makes the damaged copy in `folder`."""

    name: str
    storage: str
    damage: Callable[[Path], None]

    def apply(self, good: dict[str, Path], folder: Path) -> Path:
        bag = _copy(good, self.storage, folder)
        self.damage(bag)
        return bag

    def __repr__(self) -> str:
        return f"Corruption({self.storage}: {self.name})"


# ---------------------------------------------------------------- storage bytes
# Where in a file: hypothesis' floats favour the ends (0.0 is the file's magic), so half are drawn uniformly.
FRACTIONS = st.floats(0.0, 1.0, exclude_max=True) | st.randoms(use_true_random=False).map(lambda r: r.random())


@st.composite
def truncations(draw: st.DrawFn) -> Corruption:
    storage, fraction = draw(st.sampled_from(STORAGES)), draw(FRACTIONS)

    def damage(bag: Path) -> None:
        path = storage_file(bag)
        os.truncate(path, int(path.stat().st_size * fraction))

    return Corruption(f"truncated at {fraction:.4f} of its size", storage, damage)


@st.composite
def byte_flips(draw: st.DrawFn) -> Corruption:
    storage = draw(st.sampled_from(STORAGES))
    flips = draw(st.lists(st.tuples(FRACTIONS, st.integers(1, 255)), min_size=1, max_size=8))
    noise = draw(st.none() | st.tuples(FRACTIONS, st.binary(min_size=1, max_size=64)))

    def damage(bag: Path) -> None:
        path = storage_file(bag)
        data = bytearray(path.read_bytes())
        for where, mask in flips:
            data[int(where * len(data))] ^= mask
        if noise is not None:
            start = int(noise[0] * len(data))
            data[start : start + len(noise[1])] = noise[1][: len(data) - start]
        path.write_bytes(bytes(data))

    return Corruption(f"{len(flips)} bytes flipped, noise {noise}", storage, damage)


def break_chunk(bag: Path, index: int) -> None:
    """Make the `index`-th chunk of an mcap bag unreadable at its first message record, whose length now claims
    more than the file holds: rosbags reads the chunks before it, and fails on reaching it."""
    from rosbags.rosbag2.storage_mcap import McapReader

    path = storage_file(bag)
    reader = McapReader(path)
    reader.open()
    chunk = reader.chunks[index]
    reader.close()
    data = bytearray(path.read_bytes())
    at = chunk.chunk_start_offset + 9 + 40 + len(chunk.compression)  # opcode, length, 4 fields, name, size
    while data[at] != 0x05:  # a schema or channel record: skipped whatever its length says
        at += 9 + int.from_bytes(data[at + 1 : at + 9], "little")
    data[at + 1 : at + 9] = (2**40).to_bytes(8, "little")
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- metadata.yaml
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:  # noqa: ANN401 - any YAML value
    """Every key path into a loaded YAML document."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    paths = []
    for key, child in children:
        paths.append((*prefix, key))
        paths.extend(_paths(child, (*prefix, key)))
    return paths


def _edit(document: dict, path: tuple, value: Any, delete: bool) -> None:  # noqa: ANN401
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


def _rewrite_metadata(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(bag: Path) -> None:
        path = bag / "metadata.yaml"
        document = yaml.safe_load(path.read_text())
        edit(document)
        path.write_text(yaml.safe_dump(document))

    return damage


def _info(document: dict) -> dict:
    return document["rosbag2_bagfile_information"]


@st.composite
def metadata_lies(draw: st.DrawFn, good: dict[str, Path]) -> Corruption:
    storage = draw(st.sampled_from(STORAGES))
    document = yaml.safe_load((good[storage] / "metadata.yaml").read_text())
    topics = [t["topic_metadata"]["name"] for t in _info(document)["topics_with_message_count"]]
    kind = draw(
        st.sampled_from(["missing", "empty", "not yaml", "version", "storage", "files", "type", "remove", "replace"])
    )
    if kind == "missing":
        return Corruption("metadata.yaml removed", storage, lambda bag: (bag / "metadata.yaml").unlink())
    if kind == "empty":
        return Corruption("metadata.yaml empty", storage, lambda bag: (bag / "metadata.yaml").write_bytes(b""))
    if kind == "not yaml":
        text = draw(st.binary(min_size=1, max_size=200) | st.just(b"rosbag2_bagfile_information: [unclosed\n"))
        return Corruption(
            f"metadata.yaml is {text[:20]!r}...", storage, lambda bag: (bag / "metadata.yaml").write_bytes(text)
        )
    if kind == "version":
        version = draw(st.sampled_from([99, 0, -1, "nine", None]))
        return Corruption(
            f"version {version!r}", storage, _rewrite_metadata(lambda d: _info(d).update(version=version))
        )
    if kind == "storage":
        other = draw(st.sampled_from([*(s for s in STORAGES if s != storage), "rosbag_v1", "", None]))
        edit = _rewrite_metadata(lambda d: _info(d).update(storage_identifier=other))
        return Corruption(f"storage_identifier {other!r}", storage, edit)
    if kind == "files":
        files = draw(st.sampled_from([[], ["absent.mcap"], ["bag.db3", "bag.mcap"], [""]]))
        edit = _rewrite_metadata(lambda d: _info(d).update(relative_file_paths=files))
        return Corruption(f"relative_file_paths {files!r}", storage, edit)
    if kind == "type":
        index = draw(st.integers(0, len(topics) - 1))
        msgtype = draw(st.sampled_from([*TYPES, "surround_msgs/msg/Unknown", "not a type"]))

        def retype(document: dict) -> None:
            _info(document)["topics_with_message_count"][index]["topic_metadata"]["type"] = msgtype

        return Corruption(f"{topics[index]} declared {msgtype}", storage, _rewrite_metadata(retype))
    paths = _paths(document)
    path = draw(st.sampled_from(paths))
    value = None if kind == "remove" else draw(_VALUES)
    edit = _rewrite_metadata(lambda d: _edit(d, path, value, kind == "remove"))
    return Corruption(f"{kind} {'/'.join(map(str, path))} ({value!r})", storage, edit)


# ---------------------------------------------------------------- messages
def _rewrite(bag: Path, change: Callable[[int, Any, int, bytes], bytes | None], extra: Callable | None = None) -> None:
    """Rewrite `bag` in place, each message's raw bytes through `change(index, connection, stamp, raw)` (None: as
    it was); `extra(writer, connections)` may add connections and messages."""
    from rosbags.rosbag2 import Reader, Writer

    from surround_depth_ros.bag.writer import STORAGES as PLUGINS
    from surround_depth_ros.bag.writer import TYPESTORE

    storage = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["storage_identifier"]
    source = bag.with_name("source")
    bag.rename(source)
    with (
        Reader(source) as reader,
        Writer(bag, version=Writer.VERSION_LATEST, storage_plugin=PLUGINS[storage]) as writer,
    ):
        added = {}
        for c in reader.connections:
            qos = c.ext.offered_qos_profiles
            added[c.id] = writer.add_connection(c.topic, c.msgtype, typestore=TYPESTORE, offered_qos_profiles=qos)
        for index, (c, stamp, raw) in enumerate(reader.messages()):
            changed = change(index, c, stamp, bytes(raw))
            writer.write(added[c.id], stamp, raw if changed is None else changed)
        if extra is not None:
            extra(writer, reader.connections)
    shutil.rmtree(source)


@st.composite
def damaged_messages(draw: st.DrawFn, message_count: int) -> Corruption:
    storage = draw(st.sampled_from(STORAGES))
    damaged = draw(
        st.dictionaries(
            st.integers(0, message_count - 1),
            st.one_of(
                st.tuples(st.just("cut"), st.floats(0.0, 1.0, exclude_max=True)),
                st.tuples(st.just("noise"), st.binary(max_size=80)),
                st.tuples(st.just("flip"), st.floats(0.0, 1.0, exclude_max=True)),
            ),
            min_size=1,
            max_size=6,
        )
    )

    def change(index: int, connection: Any, stamp: int, raw: bytes) -> bytes | None:  # noqa: ANN401
        if index not in damaged:
            return None
        how, value = damaged[index]
        if how == "cut":
            return raw[: int(len(raw) * value)]
        if how == "noise":
            return value
        data = bytearray(raw)
        data[int(len(data) * value)] ^= 0xFF
        return bytes(data)

    return Corruption(f"messages damaged {damaged}", storage, lambda bag: _rewrite(bag, change))


def _sample_message(msgtype: str, stamp: int) -> bytes:
    """The CDR of a small message of `msgtype`, header stamp `stamp`."""
    import numpy as np
    from sample_framesets import small_rig

    from surround_depth_ros.bag.writer import TYPESTORE
    from surround_depth_ros.conversion.messages import MessageKit
    from surround_depth_ros.sensors.frameset import PointSweep
    from surround_depth_ros.sensors.pointcloud import sweep_to_array

    kit = MessageKit(lambda name: TYPESTORE.types[name], lambda data: np.frombuffer(data, np.uint8))
    rig = small_rig()
    camera = rig.cameras[0]
    image = np.full((camera.height, camera.width, 3), 90, np.uint8)
    builders = {
        "sensor_msgs/msg/Image": lambda: kit.image(image, stamp, camera.frame_id, "rgb8"),
        "sensor_msgs/msg/CompressedImage": lambda: kit.compressed_image(image, stamp, camera.frame_id, "png"),
        "sensor_msgs/msg/CameraInfo": lambda: kit.camera_info(camera, stamp),
        "sensor_msgs/msg/PointCloud2": lambda: kit.point_cloud(
            sweep_to_array(PointSweep("lidar", stamp, np.ones((5, 3)))), stamp, "lidar"
        ),
        "tf2_msgs/msg/TFMessage": lambda: kit.tf_message([kit.transform(np.eye(4), "base_link", "odd", stamp)]),
        "rosgraph_msgs/msg/Clock": lambda: kit.clock(stamp),
    }
    return bytes(TYPESTORE.serialize_cdr(builders[msgtype](), msgtype))


@st.composite
def mixed_types(draw: st.DrawFn, topics: list[str]) -> Corruption:
    from surround_depth_ros.bag.writer import TYPESTORE

    storage = draw(st.sampled_from(STORAGES))
    topic = draw(st.sampled_from(topics))
    count = draw(st.integers(1, 8))
    msgtype = draw(st.sampled_from(TYPES))

    def extra(writer: Any, connections: list) -> None:  # noqa: ANN401 - a rosbags Writer
        types = {c.msgtype for c in connections if c.topic == topic}
        intruder = msgtype if msgtype not in types else next(t for t in TYPES if t not in types)
        connection = writer.add_connection(topic, intruder, typestore=TYPESTORE)
        for k in range(count):
            stamp = 1_532_402_927_600_000_000 + k * 37_000_000
            writer.write(connection, stamp, _sample_message(intruder, stamp))

    name = f"{count} messages of {msgtype} (or another type the topic lacks) on {topic}"
    return Corruption(name, storage, lambda bag: _rewrite(bag, lambda *_: None, extra))


# ---------------------------------------------------------------- sqlite rows
_CELLS = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=120),
)


@st.composite
def sqlite_garbage(draw: st.DrawFn) -> Corruption:
    rows = draw(st.lists(st.tuples(st.integers(-1, 40) | _CELLS, _CELLS, _CELLS), max_size=6))
    updates = draw(
        st.lists(st.tuples(st.integers(1, 400), st.sampled_from(["data", "timestamp", "topic_id"]), _CELLS), max_size=4)
    )
    deletes = draw(st.lists(st.integers(1, 400), max_size=3))
    retype = draw(st.none() | st.tuples(st.integers(1, 30), st.sampled_from([*TYPES, "garbage", ""])))

    def damage(bag: Path) -> None:
        connection = sqlite3.connect(storage_file(bag))
        with connection:
            connection.executemany("INSERT OR IGNORE INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)", rows)
            for row, column, value in updates:
                connection.execute(f"UPDATE OR IGNORE messages SET {column} = ? WHERE id = ?", (value, row))
            connection.executemany("DELETE FROM messages WHERE id = ?", [(row,) for row in deletes])
            if retype is not None:
                connection.execute("UPDATE OR IGNORE topics SET type = ? WHERE id = ?", (retype[1], retype[0]))
        connection.close()

    name = f"sqlite: {len(rows)} rows added, {updates} updated, {deletes} deleted, topic retyped {retype}"
    return Corruption(name, "sqlite3", damage)


def corruptions(good: dict[str, Path], message_count: int, topics: list[str]) -> st.SearchStrategy[Corruption]:
    """Every kind of damage above, each as likely."""
    return st.one_of(
        truncations(),
        byte_flips(),
        metadata_lies(good),
        damaged_messages(message_count),
        mixed_types(topics),
        sqlite_garbage(),
    )
