"""The base of every Python object that owns one C handle."""
import sys

from ._tensor import _closed_error

_is_finalizing = sys.is_finalizing


class Handle:
    """Owns one C handle (self._h), freed by the class's _free in close(),
    at the end of a with block, or in __del__ (never during interpreter
    shutdown, when the library may be gone). Copying is refused: a copy
    would free the handle twice."""

    _h = None
    _free = None

    def __reduce__(self):
        raise TypeError('cannot copy or pickle a libnn %s' % type(self).__name__)

    def _handle(self):
        if not self._h:
            raise _closed_error(type(self).__name__)
        return self._h

    def close(self):
        h, self._h = self._h, None
        if h:
            type(self)._free(h)

    def __del__(self):
        h, self._h = self._h, None
        if h:
            try:
                if not _is_finalizing():
                    type(self)._free(h)
            except Exception:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
