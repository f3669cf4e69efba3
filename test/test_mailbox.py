"""The latest-wins hand-off: bounded, counts what it drops, wakes the worker on close."""

import threading

from surround_depth_ros.core.mailbox import LatestMailbox


def test_newest_wins_and_replacements_are_counted():
    box: LatestMailbox[int] = LatestMailbox()
    assert box.put(1) is False
    assert box.put(2) is True
    assert box.put(3) is True
    assert box.take(0) == 3
    assert box.take(0) is None
    assert box.replaced == 2


def test_take_waits_for_a_put_from_another_thread():
    box: LatestMailbox[str] = LatestMailbox()
    threading.Timer(0.05, box.put, args=("set",)).start()
    assert box.take(timeout=10) == "set"


def test_close_releases_a_waiting_worker():
    box: LatestMailbox[int] = LatestMailbox()
    result = []
    worker = threading.Thread(target=lambda: result.append(box.take(timeout=30)))
    worker.start()
    box.close()
    worker.join(timeout=10)
    assert not worker.is_alive() and result == [None]
