"""The engine behind :class:`bfxsync.Client` (internal; nothing here is public API).

Ownership runs one way::

    Client ─> Pool ─> Link ─> Connection ─> Transport
      │        └────> Scheduler (one thread for the whole client)
      └─> Runtime (client-wide closed/fatal state) ─> CallbackRunner (user callbacks)

A :class:`~bfxsync._engine.pool.Pool` owns the wanted subscriptions and places each
on a :class:`~bfxsync._engine.link.Link` (one WebSocket connection, at most
``max_subscriptions`` channels); a link parses its connection's frames and keeps its
own chanId registry; a connection owns its transport and reader thread.

Words with one meaning
----------------------
- *dispatch* is public vocabulary only: the ``dispatch=`` keyword of ``subscribe_*``,
  ``Account.set_dispatch``, ``Config.dispatch``/``dispatch_threads``, ``Subscription.dispatch``
  and ``Client.stats()["dispatch_threads"]`` all name a subscription's (or account
  stream's) *delivery mode*, ``inline`` or ``queued``. Inside the engine that mode is a
  :class:`~.queues.Delivery`.
- The *callback runner* (:class:`~.callback_runner.CallbackRunner`, ``Runtime.callbacks``)
  is the one place user callbacks are called: it isolates their exceptions, emits the
  client-level events and routes queued account streams.
- The *callback threads* (``bfxsync-callbacks-<n>``, :class:`~.queues.Workers`) run
  ``queued`` callbacks from bounded queues (:class:`~.queues.Lane`).
- *dispatcher* means only websocket-client's object that ``WebSocketApp.run_forever``
  reads frames through; :mod:`.transport` replaces it (``create_dispatcher``) with the
  batch framer's reader.

Imports follow ownership: an owner imports what it owns, never the reverse, and no
module imports one that imports it back, not even for annotations
(``tests/test_layout.py`` checks the whole package, ``TYPE_CHECKING`` imports included).

Threading contract
------------------
Three kinds of threads touch a link: its reader (``bfxsync-reader-<n>``: frames, and the
redial loop), the client's scheduler (``bfxsync-scheduler-<n>``: timeouts, silent sockets
and channels, paced requests) and user threads (subscribe, unsubscribe, stats, close).
Which thread may write what:

==============================================  ==========================================
state                                           writer
==============================================  ==========================================
a link's registry, supervision, outbox,         any of the three, only while holding that
``counts``, ``connected``/``maintenance``,      link's :attr:`Link.lock <.link.Link.lock>`
``last_disconnect``; each handle's              (a :class:`~.ownership.LinkLock`, one per
``_state``, ``chan_id``, ``_acked``,            link; handles get their link's lock from
``_ended``, ``_error``; every write of an       the pool before they are first used)
order book (snapshot, update, invalidation)
a link's ``flags`` and sequence number, each    the link's reader only (no lock)
handle's ``received``/``heartbeats``, its
snapshot flag, its models (ticker, candles)
the pool's wanted/placed tables                 any thread, under ``Pool._lock``
client-wide problem counts, end state           any thread, under ``Runtime._lock``
callback error counts                           any thread, under the callback runner's lock
a queue's items and figures                     any thread, under the lane's lock
the socket, transport, redial loop              the connection's reader (``stop``/``drop``
                                                from any thread only shut the socket)
the account link's input queue and connection   any thread, under ``AccountLink._input_lock``
generation; the ``authenticated`` flag's clear  (accepting an input and the drop are one
on a drop                                       step: an input never outlives its connection)
requests in flight and their flags              any thread, under ``RequestTracker._lock``
the account state, auth progress, sequence      the account link's reader only
==============================================  ==========================================

Rules that keep it simple and deadlock-free:

- The link lock is never held while user code runs: events for callbacks are deferred with
  ``LinkLock.later`` and emitted by the releasing thread after release; data callbacks run
  after the book write that preceded them released the lock.
- Lock order is pool lock, then link lock; nothing takes the pool lock under a link lock.
  A lane's lock and the runtime's are leaves (nothing is taken under them).
- Requests leave under the link lock, so a request built from the registry's state goes out
  on the connection that state describes. Sockets are blocking (one GIL trip per read), so a
  send first waits for room, at most ``connect_timeout``, and a server that stopped reading
  gets its connection dropped; a send still blocked past that (a frame larger than the room
  the kernel reported) is seen by the scheduler without the link lock, which shuts the socket.
- The receive hot path takes no lock for routing (``registry.active`` is read with one
  ``dict.get``) and only the bare lock around a book's write (one C-level acquire).
- Readers of an order book take no lock: the book's sequence lock retries while a write is
  in progress, which is correct because the link lock lets only one writer in at a time.

Debug mode (``BFXSYNC_CHECK_OWNERSHIP=1``; the test suite sets it) checks at each write of a
registry, a supervision, an outbox and a handle transition that the writing thread holds the
link's lock, and fails with :class:`~.ownership.OwnershipError` otherwise.
"""
