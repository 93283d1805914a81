"""TechX: the matching engine of a city technology exchange."""

# Before any core module is imported: compiled (mypyc) or from source (engine.native).
from engine import native as _native  # noqa: F401
