"""MicroPython's ``machine.Pin`` on CPython, for inputs only: no hardware behind it.

A pin's interrupt handler belongs to the pin number, as on a board, so that a test can fire
it with ``falling_edge(number)`` whichever ``Pin`` object registered it.
"""

from collections.abc import Callable
from typing import Any

Handler = Callable[["Pin"], Any]

_irqs: dict[Any, tuple[int, Handler]] = {}
_levels: dict[Any, int] = {}


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id: Any, mode: int = -1, pull: int = -1) -> None:
        self.id = id
        if pull == Pin.PULL_UP:
            _levels[id] = 1
        elif pull == Pin.PULL_DOWN:
            _levels[id] = 0

    def value(self) -> int:
        return _levels.get(self.id, 0)

    def irq(self, handler: Handler | None = None,
            trigger: int = IRQ_FALLING | IRQ_RISING) -> None:
        if handler is None:
            _irqs.pop(self.id, None)
        else:
            _irqs[self.id] = (trigger, handler)


def falling_edge(number: Any) -> None:
    """The input on pin ``number`` goes low (and back high): an S0 pulse."""
    _levels[number] = 0
    trigger, handler = _irqs.get(number, (0, None))
    if handler is not None and trigger & Pin.IRQ_FALLING:
        handler(Pin(number))
    _levels[number] = 1
