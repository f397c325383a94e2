"""The store's error: a path that is not a usable run."""


class StoreError(ValueError):
    """A path that is not a usable run; the message is one line."""
