"""A chat turn, in three steps that every caller runs in order; each step is a module of its own,
and this one names what the routes use of them.

1. Prepare (prepare.py, context.py): resolve the model, find the session (or plan a new one),
   load the bounded context, reserve the call's budget, and end the reads (on PostgreSQL sent
   one by one in autocommit). No provider is called and nothing of the turn is written. The
   turn's state (turn_state.py) says its `Kind`: a question that starts or continues a
   session, a regenerate or an edit (an existing question answered again), or a conversation a
   /v1 client sent.
2. The provider call (call.py): `complete` for a whole reply, or `open_stream`. Every route
   runs `answer` (the call, then the failure or the reply stored) or, streamed, `called`.
3. Store. A whole reply (store.py): `store` or `store_failure`, one transaction that writes the
   session if it is new, the user's message, and the reply (or the message flagged with the
   error). A streamed reply is stored in steps (stream_store.py), so that nothing a client was
   told of is lost: `start`, `save_progress`, `finish`. Every store runs in one transaction
   helper (commit.py) over the rows of session_rows.py; what the call used is charged by
   governance/charging.py. A reply whose stream died with its worker is flagged by the sweep
   (sweep.py).

A regenerate or an edit marks what it replaces `superseded` once the new reply (or, for an edit,
the edited question) is stored, so context, counts and history only ever see the current
transcript.

Storing never trusts an id alone: each write names the session's user and number, a message's
session, and a streamed reply's lease token, so a row that stopped being the turn's (deleted
meanwhile, or another user's row that took a reused id) is never written. A turn whose session
was deleted meanwhile stores nothing and raises SessionDeleted.
"""

from ..governance.charging import release_unsettled
from .call import answer, called, complete, open_stream
from .context import build_messages, load_context
from .prepare import prepare, prepare_again, prepare_conversation
from .store import store, store_failure
from .stream_store import due, finish, save_progress, start
from .turn_state import CHANGED, CLIENT_CLOSED, INTERRUPTED, Kind, Turn, asked, make_title

__all__ = [
    "CHANGED",
    "CLIENT_CLOSED",
    "INTERRUPTED",
    "Kind",
    "Turn",
    "answer",
    "asked",
    "build_messages",
    "called",
    "complete",
    "due",
    "finish",
    "load_context",
    "make_title",
    "open_stream",
    "prepare",
    "prepare_again",
    "prepare_conversation",
    "release_unsettled",
    "save_progress",
    "start",
    "store",
    "store_failure",
]
