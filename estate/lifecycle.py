"""Process lifecycle shared by the services' composition roots."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def stop_on_signals(stop: threading.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT; does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        # Setting an Event inside a signal handler can deadlock when the signal interrupts
        # the main thread while it holds that Event's lock; a thread sets it instead.
        threading.Thread(target=stop.set, name="signal-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
