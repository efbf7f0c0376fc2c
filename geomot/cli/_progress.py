"""Progress of the long sub-commands (``distance``, ``match``) on stderr: a tqdm bar over named stages.

The bar is redrawn every second from a background thread, so its elapsed time moves during a long stage that
reports nothing itself (a Sinkhorn solve, an eigensolver call). ``--quiet`` disables it.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType

__all__ = ["Stages"]


class Stages:
    """A context manager: ``with Stages(n, desc=...) as st: st.next("loading"); ...``.

    Args:
        total: number of stages.
        desc: prefix of the bar's label.
        enabled: ``False`` prints nothing.
    """

    def __init__(self, total: int, *, desc: str, enabled: bool = True) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self._bar = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    def __enter__(self) -> Stages:
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=self.desc, file=sys.stderr, leave=True, dynamic_ncols=True,
                             bar_format="{desc}: {n_fmt}/{total_fmt} stages [{elapsed}]")
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            bar = self._bar
            if bar is not None:
                bar.refresh()

    def next(self, name: str) -> None:
        """Close the current stage (if any) and start the one called ``name``."""
        if self._bar is None:
            return
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description_str(f"{self.desc}: {name}", refresh=True)

    def __call__(self, name: str) -> None:
        """Alias of :meth:`next`, so that an instance can be passed as a ``progress`` callback."""
        self.next(name)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            if exc_type is None:
                self._bar.n = self.total
                self._bar.set_description_str(self.desc, refresh=False)
            self._bar.close()
