"""The package version, in a module of its own so that any module can import it without
importing the package (`lstmlab/__init__` imports io.files, which writes the version)."""

__version__ = "0.1.0"
