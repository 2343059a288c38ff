"""dlc's version, in a module of its own so that any layer (a backend, the
deploy runtime) can read it without importing the package's public API."""
__version__ = "0.1.0"
