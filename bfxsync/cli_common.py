"""What the ``bfxsync`` subcommands share: exit statuses, the one-line error, and a client
that is connected (and subscribed) or a clear reason why not.

:mod:`bfxsync.cli` (the entry point) and :mod:`bfxsync.cli_record` both import this module;
it imports neither, so the command-line modules import one way.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, List

import bfxsync

logger = logging.getLogger("bfxsync.cli")  # the name it had in cli.py, where this came from

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """A failure reported as one line on stderr, with the exit status to use."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def connect(stack: contextlib.ExitStack, url: str, timeout: float, **options: Any) -> bfxsync.Client:
    """Start a client and wait for the handshake; on failure, say why in one line.

    The client redials forever by itself, so "unreachable" can only mean "not connected
    within ``timeout``"; the reason comes from the last failed attempt.
    """
    try:
        client = bfxsync.Client(url, connect_timeout=timeout, **options)
    except ValueError as err:  # bad URL, non-positive timeout
        raise CliError(str(err), EXIT_USAGE) from None
    reasons: List[str] = []
    client.on_disconnected(lambda event: reasons.append(event.reason))
    client.start()
    stack.callback(client.close, 2.0)
    try:
        client.wait_connected(timeout)
    except bfxsync.BfxTimeoutError:
        reason = reasons[-1] if reasons else f"no answer within {timeout:g} s"
        if reason.startswith("connect to ") and " failed: " in reason:
            reason = reason.split(" failed: ", 1)[1]  # the URL already names host and port
        raise CliError(f"cannot connect to {url}: {reason}", EXIT_FAILURE) from None
    except bfxsync.BfxError as err:  # e.g. VersionMismatchError: retrying cannot help
        raise CliError(f"cannot use {url}: {err}", EXIT_FAILURE) from None
    return client


def subscribe(client: bfxsync.Client, spec: Any, on_data: Callable[[Any], Any], timeout: float) -> Any:
    """Subscribe ``on_data`` to ``spec`` and wait for the server's answer; a rejection is a usage error."""
    subscription = client.subscribe(spec, on_data=on_data)
    try:
        subscription.wait_subscribed(timeout)
    except bfxsync.SubscriptionError as err:
        what = getattr(spec, "key", None) or spec.symbol
        message = f"the server rejected the {spec.channel} subscription to {what}: {err.msg} (code {err.code})"
        raise CliError(message, EXIT_USAGE) from None
    except bfxsync.BfxTimeoutError:
        logger.warning("%r not acknowledged yet; still waiting", spec)
    return subscription
