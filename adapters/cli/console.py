"""The consoles the command line prints on: fitted to a terminal, as wide as their content off one."""

from __future__ import annotations

from rich.console import Console, ConsoleDimensions

UNBOUNDED_WIDTH = 100_000
"""The width off a terminal: wider than any line the commands print, so no table cell is cut or wrapped."""


class FitConsole(Console):
    """A console as wide as the terminal it prints on, and off a terminal (a pipe, a file) as wide as its content:
    tables show every value in full, so ``dma-upgrade history packages | grep completed`` finds its rows."""

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size on a terminal (as ``Console``), else ``UNBOUNDED_WIDTH`` columns."""
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(UNBOUNDED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


def console(*, stderr: bool = False) -> FitConsole:
    """A console for stdout (or ``stderr``), printing text as given: no highlighting, no wrapping of long lines."""
    return FitConsole(stderr=stderr, highlight=False, soft_wrap=True)
