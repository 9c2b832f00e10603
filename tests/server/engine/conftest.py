from engine_support import core, sdk  # noqa: F401  (fixtures)
