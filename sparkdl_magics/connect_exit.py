"""Leaving a Spark Connect session at interpreter exit without hanging.

On Python 3.12+ an interpreter that exits while it holds a Connect-trained MLlib model
(a fitted classifier in a notebook's namespace) can hang for ever: IPython's exit hook
clears the namespace, the model's ``__del__`` asks the server to drop it from its ML cache
over a streaming gRPC call, and that call never completes at shutdown (3.12 no longer
lets atexit code start threads). Our exit hook runs before IPython's and pyspark's: it
releases each live Connect session on its server (one unary call with a deadline: the
server drops the session's models with it) and closes the client, so the models'
finalizers find no live session and make no call.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import weakref
from typing import Any, Iterator

#: Seconds the release of one session may wait for its server at exit.
RELEASE_TIMEOUT_S = 5.0

_sessions: "weakref.WeakSet[Any]" = weakref.WeakSet()


def watch(spark: Any) -> None:
    """Release *spark* (a Connect session) at exit, before IPython's and pyspark's own
    exit hooks (atexit runs the latest registration first, so it is registered again)."""
    with contextlib.suppress(TypeError):
        _sessions.add(spark)
    atexit.unregister(release_all)
    atexit.register(release_all)


def _live_sessions() -> Iterator[Any]:
    seen = set()
    candidates = list(_sessions)
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession
        candidates.append(ConnectSession.getActiveSession())
        candidates.append(getattr(ConnectSession, "_default_session", None))
    except Exception:  # noqa: BLE001 - no Connect client here, or it is half torn down
        pass
    for spark in candidates:
        client = getattr(spark, "_client", None)
        if client is None or id(client) in seen or getattr(client, "is_closed", True):
            continue
        seen.add(id(client))
        yield spark


def release_all() -> None:
    """Release every live Connect session of this process, each within a deadline."""
    for spark in _live_sessions():
        release(spark)


def release(spark: Any) -> None:
    """Release *spark* on its server within a deadline and close its client.

    The garbage collector stays off meanwhile: a Connect model's finalizer run inside the
    release call would start a second call on the same channel and wait for ever (the
    hang pyspark's own ``stop()`` can fall into). Afterwards the client counts as closed,
    so no finalizer calls the server through it."""
    client = spark._client
    collecting = gc.isenabled()
    gc.disable()
    try:
        with contextlib.suppress(Exception):
            _release_on_server(client)
        with contextlib.suppress(Exception):
            client.close()  # waits at most 10 s for pending releases, closes the channel
    finally:
        client._closed = True  # whatever close() managed: no finalizer calls the server
        if collecting:
            gc.enable()


def _release_on_server(client: Any) -> None:
    """pyspark's ``release_session`` as one unary call with a deadline (no retries)."""
    import pyspark.sql.connect.proto as pb2
    request = pb2.ReleaseSessionRequest()
    request.session_id = client._session_id
    request.client_type = client._builder.userAgent
    if getattr(client, "_user_id", None):
        request.user_context.user_id = client._user_id
    client._stub.ReleaseSession(request, metadata=client._builder.metadata(),
                                timeout=RELEASE_TIMEOUT_S)
