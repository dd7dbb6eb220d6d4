"""The durable store: every SQL statement of acjob lives in this package.

SQLite in WAL mode with one writer (the daemon). Each public method is one
transaction, so what a method returns is committed: a job is acknowledged to a client
only after :meth:`Store.create_jobs` returned. Every state change appends an event with
a monotonic sequence number in the same transaction.
"""

from .commits import GroupCommit
from .database import Database
from .jobs import Store
from .outbox import Outbox

__all__ = ["Database", "GroupCommit", "Outbox", "Store"]
