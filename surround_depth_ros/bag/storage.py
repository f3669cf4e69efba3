"""Opening a rosbag2 and reading its messages through `rosbags`, with every fault of the files named.

rosbags raises its `ReaderError` for what it checks, and whatever its parsers meet for what it does not:
struct, index, type, unicode, SQLite and decompression errors on truncated or flipped bytes, or a metadata
file whose values have the wrong types. Here a bag that cannot be opened is a `BagFormatError` (a ValueError,
which the commands report in one line); a message that cannot be used (CDR that does not deserialize, a log
time that is no time) is skipped and counted by topic and cause; a storage that fails part way ends the read
where it failed, saying why, and what came before is used (`ReadFaults`). A topic recorded with several types
is read as one of them (what a subscriber of one type gets); the others' messages are counted as skipped.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from surround_depth_ros.base.yaml_file import YamlFileError, load_yaml

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
MAX_LOG_TIME = 2**63  # rosbag2 log times are int64 nanoseconds; mcap stores them unsigned


class BagFormatError(ValueError):
    """A bag that cannot be opened, or lacks what a FrameSet needs; the message names the file, topic or field."""


def fault_text(error: BaseException, limit: int = 200) -> str:
    """One line saying what went wrong (the library's message, with its kind when that is not rosbags' own)."""
    text = " ".join(str(error).split()) or "no message"
    kind = type(error).__name__
    text = text if kind == "ReaderError" else f"{kind}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class ReadFaults:
    """What reading a bag could not use: messages skipped ("topic: cause" -> count), and why a read stopped early."""

    skipped: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None

    def skip(self, topic: str, cause: str, count: int = 1) -> None:
        self.skipped[f"{topic}: {cause}"] += count

    def summary(self) -> dict[str, Any]:
        """For a command's summary: {"messages_skipped": {...}, "read_stopped": reason or None}."""
        return {"messages_skipped": dict(self.skipped), "read_stopped": self.stopped}

    def describe(self) -> str:
        """One line for a person: how many messages were skipped and why reading stopped, or "" when nothing was."""
        parts = [f"{sum(self.skipped.values())} messages skipped"] if self.skipped else []
        parts += [f"reading stopped early: {self.stopped}"] if self.stopped else []
        return "; ".join(parts)


def _special_files(path: Path) -> list[str]:
    """Entries of a bag directory that opening would block on or cannot read (a FIFO, socket or device)."""
    return sorted(p.name for p in path.iterdir() if not p.is_file() and not p.is_dir())


@contextmanager
def open_bag(path: str | os.PathLike) -> Iterator[Reader]:
    """An open rosbags Reader of a rosbag2 directory: FileNotFoundError without metadata.yaml, BagFormatError when
    the metadata or a storage file cannot be opened (the cause in one line)."""
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise FileNotFoundError(f"{path} is not a rosbag2 directory (no metadata.yaml in it)")
    if special := _special_files(path):
        raise BagFormatError(f"{path}: cannot open the bag: {special} are not regular files")
    try:  # rosbags' own YAML reader would expand an alias bomb (billion laughs) in the metadata
        load_yaml(path / "metadata.yaml")
    except (YamlFileError, UnicodeDecodeError) as error:
        raise BagFormatError(f"{path}: cannot open the bag: {fault_text(error)}") from error
    reader = Reader(path)
    try:
        reader.open()
    except Exception as error:  # noqa: BLE001 - whatever rosbags' parsers raise on a damaged file means the same
        raise BagFormatError(f"{path}: cannot open the bag: {fault_text(error)}") from error
    try:
        if bad := [(c.topic, c.msgtype) for c in reader.connections if not _names(c)]:
            raise BagFormatError(f"{path}: cannot open the bag: its metadata lists topics {bad} (not names)")
        yield reader
    finally:
        reader.close()


def _names(connection: Connection) -> bool:
    """Whether a connection's topic and type are names (rosbags takes whatever the metadata holds)."""
    return all(isinstance(v, str) and v for v in (connection.topic, connection.msgtype))


def declared_count(connection: Connection) -> int:
    """A connection's message count as the metadata declares it (0 when that is not a count)."""
    count = connection.msgcount
    return count if isinstance(count, int) and count > 0 else 0


def main_types(connections: Sequence[Connection], preferred: Mapping[str, str] | None = None) -> dict[str, str]:
    """The type each topic is read as: `preferred[topic]` when some connection has it, else that of most of its
    declared messages (the first connection's on a tie)."""
    counts: dict[str, Counter[str]] = {}
    for c in connections:
        counts.setdefault(c.topic, Counter())[c.msgtype] += declared_count(c)
    preferred = preferred or {}
    return {
        topic: preferred[topic] if preferred.get(topic) in types else types.most_common(1)[0][0]
        for topic, types in counts.items()
    }


def count_other_types(connections: Sequence[Connection], types: Mapping[str, str], faults: ReadFaults) -> None:
    """Count, as skipped, the declared messages of `types`' topics recorded with another type than theirs."""
    for c in connections:
        if c.topic in types and c.msgtype != types[c.topic]:
            faults.skip(c.topic, f"{c.msgtype} messages on a topic taken as {types[c.topic]}", declared_count(c))


def messages(
    reader: Reader, connections: Sequence[Connection], faults: ReadFaults, decode: bool = True
) -> Iterator[tuple[Connection, int, Any]]:
    """(connection, log time, message) of `connections` in log order: rosbags messages with `decode`, else the raw
    CDR bytes, checked to deserialize when the type store knows the type. Unusable messages are skipped and counted
    in `faults`; a storage failing part way ends the iteration (`faults.stopped`)."""
    if not connections:  # rosbags reads every topic when given none
        return
    stream = reader.messages(connections=connections)
    read = 0
    while True:
        try:
            connection, log_time, raw = next(stream)
        except StopIteration:
            return
        except Exception as error:  # noqa: BLE001 - the storage's parser met damaged bytes: nothing after is reliable
            faults.stopped = f"the storage fails after {read} messages read: {fault_text(error)}"
            return
        read += 1
        if not isinstance(log_time, int) or not 0 <= log_time < MAX_LOG_TIME:
            faults.skip(connection.topic, "log time is not a time")
            continue
        if not isinstance(raw, bytes | bytearray | memoryview):  # an SQLite row holding text, a number or NULL
            faults.skip(connection.topic, f"data is {type(raw).__name__}, not CDR bytes")
            continue
        try:
            msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype) if decode or _known(connection.msgtype) else None
        except Exception as error:  # noqa: BLE001 - rosbags' deserializer on damaged bytes raises anything
            faults.skip(connection.topic, f"undecodable {connection.msgtype} ({type(error).__name__})")
            continue
        yield connection, log_time, msg if decode else bytes(raw)


def _known(msgtype: str) -> bool:
    return msgtype in TYPESTORE.types
