"""The store's one error (a leaf module: the backends and their mixins all raise it)."""


class StorageUnavailable(Exception):
    """The store could not be reached or did not answer; `str()` says why, without credentials."""
