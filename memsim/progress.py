"""Progress bars that read well in a terminal and in a log file.

In a terminal a bar redraws in place (tqdm). When stderr is not a terminal (a log file, a pipe, a batch job),
redraws would pile up: a 3-epoch training wrote 1,400 of them into its log. There a bar prints whole lines
only, at most one per :data:`LOG_INTERVAL` seconds, and its final state once when it closes (a bar that
would vanish in a terminal, ``leave=False``, prints nothing at close: the caller's summary line follows).

    from memsim.progress import progress_bar
    for batch in progress_bar(batches, desc="epoch 1/3"):
        ...
"""
from __future__ import annotations

import sys
import time

from tqdm.std import tqdm as plain_tqdm

__all__ = ["progress_bar", "LOG_INTERVAL", "LogBar"]

#: seconds between two progress lines in a log file
LOG_INTERVAL = 30.0


class LogBar(plain_tqdm):
    """tqdm that writes one whole line per refresh (no carriage returns), at most every :data:`LOG_INTERVAL` s."""

    def __init__(self, *args, **kwargs):
        kwargs["mininterval"] = kwargs["maxinterval"] = LOG_INTERVAL
        kwargs.update(dynamic_ncols=False, ncols=100, ascii=True)
        # tqdm refreshes on creation and on every set_postfix (the training loop sets one per batch), whatever its
        # mininterval: the interval is enforced here, where the line is written
        self._last_line = time.monotonic()
        self._printed_n = None
        self._opened = False  # no line for 0 %
        super().__init__(*args, **kwargs)
        self._opened = True

    def display(self, msg=None, pos=None, force: bool = False):
        if not self._opened or self.disable:
            return True
        now = time.monotonic()
        if not force and now - self._last_line < LOG_INTERVAL:
            return True
        self.fp.write((msg or self.__str__()).rstrip() + "\n")
        self.fp.flush()
        self._last_line, self._printed_n = now, self.n
        return True

    def clear(self, nolock=False):  # nothing was drawn in place
        pass

    def close(self):
        if self.disable:
            return
        leave = self.leave
        if leave and self.n != self._printed_n:
            self.display(force=True)  # the final state, once
        self.leave, self.disable = False, True  # tqdm's own close would add a blank line
        try:
            self._decr_instances(self)
        finally:
            self.leave = leave


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _notebook_bar():
    """tqdm's widget bar inside a Jupyter kernel with ipywidgets (it updates in place), else None."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        import ipywidgets  # noqa: F401  (tqdm.notebook needs it; without it tqdm warns and prints text)
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:
        return None
    return notebook_tqdm


def progress_bar(iterable=None, **kwargs) -> plain_tqdm:
    """tqdm in a terminal, its widget in a notebook (with ipywidgets), a :class:`LogBar` otherwise (a log file,
    a pipe, a notebook without widgets: whole lines, no redraws)."""
    stream = kwargs.get("file") or sys.stderr
    if _is_terminal(stream):
        return plain_tqdm(iterable, **kwargs)
    return (_notebook_bar() or LogBar)(iterable, **kwargs)
