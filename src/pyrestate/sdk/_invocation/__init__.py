"""The pieces of `InvocationContext` (sdk/server_context.py), one family of context calls per module.

`plumbing` drives the VM (output, progress, waiting); `run` (side effects) and `calls` build on it, and
`futures` holds the awaitables handed to user code. State, timers, awakeables, signals and promises are
small enough to stay in `InvocationContext` itself.
"""
