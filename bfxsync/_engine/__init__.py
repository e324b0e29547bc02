"""The engine behind :class:`bfxsync.Client` (internal; nothing here is public API).

Ownership runs one way::

    Client ─> Pool ─> Link ─> Connection ─> Transport
      │        └────> Scheduler (one thread for the whole client)
      └─> Runtime (client-wide closed/fatal state), Dispatcher (user callbacks)

A :class:`~bfxsync._engine.pool.Pool` owns the wanted subscriptions and places each
on a :class:`~bfxsync._engine.link.Link` (one WebSocket connection, at most
``max_subscriptions`` channels); a link parses its connection's frames and keeps its
own chanId registry; a connection owns its transport and reader thread.
"""
