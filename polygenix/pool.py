"""A connection pool that serves the threads waiting for a connection in the order they came.

SQLAlchemy's QueuePool keeps its idle connections in a queue guarded by a condition: a
connection given back wakes the longest waiter, which must then take the queue's lock again,
and any thread that gets there first (one that just gave a connection back and asks again, a
request just arriving) takes the connection; the waiter, finding the queue empty, waits again at
the back of the line. With hundreds of threads in a worker (a burst of new streams), a few waiters
lose that race over and over until DB_POOL_TIMEOUT answers them 503, though most waits are
short. Here a connection given back goes straight to the longest waiter, and a thread that
arrives while others wait queues behind them. With nobody waiting the pool is QueuePool: the
same size, overflow, timeout and recycling, idle connections handed out last-in first-out if
asked, the same events.
"""

import threading
from collections import deque

from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.util import queue


class _Waiter:
    """A thread waiting for a connection: woken with the one handed to it."""

    __slots__ = ("entry", "handed")

    def __init__(self) -> None:
        self.entry: ConnectionPoolEntry | None = None
        self.handed = threading.Lock()
        self.handed.acquire()


class FairQueue(queue.Queue[ConnectionPoolEntry]):
    """QueuePool's queue of idle connections, with waiters served first come, first served."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False):
        super().__init__(maxsize, use_lifo)
        self.waiters: deque[_Waiter] = deque()

    def put(
        self, item: ConnectionPoolEntry, block: bool = True, timeout: float | None = None
    ) -> None:
        with self.mutex:  # held throughout: no thread starts waiting while it is put among the idle
            if not self.waiters:
                super().put(item, block, timeout)
                return
            waiter = self.waiters.popleft()
            waiter.entry = item
            waiter.handed.release()

    def get(self, block: bool = True, timeout: float | None = None) -> ConnectionPoolEntry:
        with self.mutex:
            if not block or self.queue:  # none idle while others wait: each is handed on
                return super().get(False)
            waiter = _Waiter()
            self.waiters.append(waiter)
        try:
            waiter.handed.acquire(timeout=-1 if timeout is None else timeout)
        except BaseException:  # interrupted (or a timeout too long for a lock): out of line
            with self.mutex:
                if not self._left(waiter) and waiter.entry is not None:
                    self.put(waiter.entry, False)  # handed one meanwhile: the next waiter's
            raise
        with self.mutex:
            self._left(waiter)  # still in line: not handed one in time
        if waiter.entry is None:
            raise queue.Empty
        return waiter.entry

    def _left(self, waiter: _Waiter) -> bool:
        """`waiter` out of the line; False if it was not in it (handed one)."""
        try:
            self.waiters.remove(waiter)
        except ValueError:
            return False
        return True


class FairQueuePool(QueuePool):
    """QueuePool whose waiting threads get the connections given back in the order they came."""

    _queue_class = FairQueue
