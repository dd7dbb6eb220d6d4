"""A job's progress bar on stderr, for the tools that wait for a job.

Drawn only when stderr is a terminal (nothing at all on a pipe or in a file), with
``rich``, which is imported only once a bar is actually drawn: a tool's start stays
fast. The bar shows how far the job is (a moving bar while it has said nothing), the
elapsed time, a rough remaining time where the progress allows one (the time so far,
scaled by what is left), and the job's message. It disappears when the wait ends.

```python
with ProgressBar(label=job_id, started_at=started) as bar:
    for progress in client.progress(job_id):
        bar.update(progress.percent, progress.message)
```

While the bar is shown, text printed through ``sys.stderr`` appears above it; bytes
written straight to file descriptor 1 or 2 of the same terminal (a job's output) would
garble it: close the bar first, or draw none while output goes to that terminal.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

#: Redraws per second (the elapsed time moves on between reports).
REFRESH_PER_SECOND = 2
#: Below this percent, or this many seconds, no remaining time is guessed.
_MIN_PERCENT = 1.0
_MIN_ELAPSED = 5.0


def stderr_is_terminal() -> bool:
    """Tell whether stderr is a terminal (a closed or missing stderr is not)."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (ValueError, OSError):
        return False


def remaining(elapsed: float, percent: float | None) -> float | None:
    """Return a rough guess of the seconds left: the time so far, scaled by what is
    left; ``None`` when the progress allows no guess (none yet, under 1 %, the first
    seconds, or done)."""
    if percent is None or not _MIN_PERCENT <= percent < 100.0 or elapsed < _MIN_ELAPSED:
        return None
    return elapsed * (100.0 - percent) / percent


def clock(seconds: float) -> str:
    """Return a duration as ``M:SS``, ``H:MM:SS`` or ``Dd HH:MM:SS``."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class ProgressBar:
    """A progress bar with a message on stderr, only when stderr is a terminal.

    A context manager: the bar appears on entering and disappears on leaving. Where
    it is not drawn, every method does nothing (and ``rich`` is never imported).

    Args:
        label: Shown before the bar (a job id, say), or nothing.
        started_at: When what is timed started (Unix time; default: now).
        console: A ``rich.console.Console`` to draw on instead of stderr (tests); the
            bar is drawn if it is a terminal.
    """

    def __init__(self, *, label: str | None = None, started_at: float | None = None,
                 console: Any = None) -> None:
        self.label = label
        self.started_at = time.time() if started_at is None else started_at
        self.percent: float | None = None
        self.message: str | None = None
        self._console = console
        self.active = bool(console.is_terminal) if console is not None else stderr_is_terminal()
        self._live: Any = None

    def __enter__(self) -> ProgressBar:
        if self.active:
            from rich.console import Console
            from rich.live import Live

            console = self._console or Console(stderr=True)
            self._live = Live(get_renderable=self._render, console=console, transient=True,
                              refresh_per_second=REFRESH_PER_SECOND,
                              redirect_stdout=False, redirect_stderr=True)
            self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Remove the bar (idempotent)."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def update(self, percent: float | None, message: str | None = None, *,
               started_at: float | None = None) -> None:
        """Show ``percent`` (0 to 100; ``None``: not known) and ``message``;
        ``started_at`` restarts the clock (a new attempt of the job)."""
        self.percent = None if percent is None else min(100.0, max(0.0, percent))
        self.message = message
        if started_at is not None:
            self.started_at = started_at
        if self._live is not None:
            self._live.refresh()

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar as Bar
        from rich.table import Table
        from rich.text import Text

        elapsed = time.time() - self.started_at
        grid = Table.grid(padding=(0, 1))
        row: list[Any] = []
        if self.label:
            grid.add_column(no_wrap=True)
            row.append(Text(self.label, style="bold"))
        grid.add_column(width=24, no_wrap=True)
        row.append(Bar(total=None if self.percent is None else 100.0,
                       completed=self.percent or 0.0, width=24))
        grid.add_column(justify="right", no_wrap=True)
        row.append(Text("" if self.percent is None else f"{self.percent:.0f}%"))
        grid.add_column(no_wrap=True)
        left = remaining(elapsed, self.percent)
        times = clock(elapsed) + ("" if left is None else f" (~{clock(left)} left)")
        row.append(Text(times, style="dim"))
        grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        row.append(Text(self.message or "", overflow="ellipsis", no_wrap=True))
        grid.add_row(*row)
        return grid
