"""Batches made in a background thread while the training step runs.

    with Prefetch(batches(x, y, 64, ...), source="data/images") as stream:
        for xb, yb in stream:
            step(xb, yb)

A thread pulls items from the iterator into a bounded queue (`depth` items
ahead, so memory stays bounded); the consumer takes them in the same order,
so a run is bit for bit the one without prefetching.  Reading rows from a
memory-mapped file, decoding and per-batch normalisation (NumPy copies,
which release the GIL) then overlap with the step.

An exception in the thread is re-raised in the consumer: a `DlcError` as it
is (it names its file), anything else as a `DlcError` naming `source`.
Leaving the `with` block early (an error in the step, Ctrl-C) stops the
thread and joins it before the exception goes on.
"""
from __future__ import annotations

import queue
import threading

from ..errors import DlcError

_DONE = object()


class Prefetch:
    def __init__(self, items, *, depth: int = 2, source: str = "the data set"):
        if depth < 1:
            raise ValueError("prefetch depth must be at least 1")
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.source = source
        self._thread = threading.Thread(target=self._produce, name="dlc-prefetch", daemon=True)
        self._started = False
        self._finished = False

    # producer ------------------------------------------------------------------------
    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put((True, item)):
                    return
            self._put((True, _DONE))
        except BaseException as e:        # handed to the consumer, which re-raises it
            self._put((False, e))

    def _put(self, entry) -> bool:
        """Queue `entry`, waiting while the queue is full; False once stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    # consumer ------------------------------------------------------------------------
    def __iter__(self):
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        if not self._started:
            self.__iter__()
        ok, item = self._queue.get()
        if ok and item is _DONE:
            self._finished = True
            self._thread.join()
            raise StopIteration
        if not ok:
            self._finished = True
            self.close()
            if isinstance(item, DlcError):
                raise item
            if isinstance(item, (KeyboardInterrupt, SystemExit)):
                raise item
            raise DlcError(f"loading batches from {self.source} failed: {type(item).__name__}: {item}",
                           hint="the data files may have changed while training") from item
        return item

    def close(self) -> None:
        """Stop the thread (it may be blocked on a full queue) and wait for it."""
        self._stop.set()
        if self._started and self._thread.is_alive() and self._thread is not threading.current_thread():
            while self._thread.is_alive():
                try:                       # make room, so a blocked put sees the stop flag
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
        close = getattr(self._items, "close", None)     # a generator's finally blocks run now
        if close is not None and not self._thread.is_alive():
            close()

    def __enter__(self):
        return iter(self)

    def __exit__(self, *exc) -> None:
        self.close()
