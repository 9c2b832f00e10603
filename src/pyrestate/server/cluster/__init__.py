"""Partitions spread over several processes (`pyrestate server --workers N`).

* `layout`: which process owns which partitions, fixed when the data dir is created;
* `wire`: framed messages between processes (Unix sockets);
* `node`: one process's view of the others: request forwarding, the durable outbox transport, schema sync;
* `router`: the `ServerCore` a worker serves, routing each request to its partition's owner;
* `supervisor`: the parent process (listening sockets, starting and restarting workers);
* `worker`: a worker process's entry point.

See docs/scale-out.md.
"""
