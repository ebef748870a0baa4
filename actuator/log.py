"""Logging for the actuator: the standard ``logging`` module, or ``print`` on bare MicroPython.

MicroPython ships no ``logging`` module unless micropython-lib's is installed; then messages go
to the serial console through ``print``. Never pass a device key to a logger.
"""

try:
    import logging

    _HAVE_LOGGING = True
except ImportError:  # bare MicroPython
    _HAVE_LOGGING = False

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Logger(Protocol):
        """What the actuator needs from a logger (a subset of ``logging.Logger``)."""

        def debug(self, msg: str, *args: object) -> None:
            """Log a debug message."""

        def info(self, msg: str, *args: object) -> None:
            """Log an informational message."""

        def warning(self, msg: str, *args: object) -> None:
            """Log a warning."""

        def error(self, msg: str, *args: object) -> None:
            """Log an error."""


class PrintLogger:
    """A logger that prints ``LEVEL name: message`` lines (MicroPython's serial console)."""

    def __init__(self, name: str) -> None:
        """Name the logger."""
        self.name = name

    def _emit(self, level: str, msg: str, args: "tuple[object, ...]") -> None:
        """Print one formatted line."""
        print(level, self.name + ":", msg % args if args else msg)

    def debug(self, msg: str, *args: object) -> None:
        """Drop debug messages (the console is for what a person needs to see)."""

    def info(self, msg: str, *args: object) -> None:
        """Print an informational message."""
        self._emit("INFO", msg, args)

    def warning(self, msg: str, *args: object) -> None:
        """Print a warning."""
        self._emit("WARNING", msg, args)

    def error(self, msg: str, *args: object) -> None:
        """Print an error."""
        self._emit("ERROR", msg, args)


def get_logger(name: str) -> "Logger":
    """Return the logger called ``name``."""
    if _HAVE_LOGGING:
        return logging.getLogger(name)
    return PrintLogger(name)
