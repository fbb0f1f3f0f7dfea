"""Full-text search over the caller's own messages and session titles.

PostgreSQL: a generated `search_vector` column (to_tsvector('english', ...)) on `messages` and
`chat_sessions`, GIN-indexed, matched with websearch_to_tsquery. SQLite: an FTS5 table over each
(external content, so the text is stored once), kept in step by triggers, matched with the same
query language translated by `fts5_query`: quoted phrases, `or`, `-word`, every other character
literal text, so no FTS5 operator a user types is ever interpreted.

Neither engine's objects can be declared in model types the other accepts, so they live outside
the models: `db.create_all` installs them through the `after_create` listener below, migration
0013 creates them in migrated databases (with its own frozen copy of this DDL), and
`include_object` keeps autogenerate from proposing to drop them. SQLite drops a table's triggers
when a batch migration rebuilds it: a migration that rebuilds `messages` or `chat_sessions` must
reinstall them.
"""

import html
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnClause,
    column,
    event,
    func,
    literal_column,
    null,
    select,
    table,
    union_all,
)

from ..api import page_of
from ..extensions import db
from ..models import ChatSession, Message
from .history import CURRENT

# (table, indexed column) on both engines.
INDEXED = (("messages", "content"), ("chat_sessions", "title"))
FTS_TABLES = tuple(f"{name}_fts" for name, _ in INDEXED)
SEARCH_INDEXES = tuple(f"ix_{name}_search_vector" for name, _ in INDEXED)

SNIPPET_WORDS = 16
# Letters and digits: what both engines' tokenizers keep (underscore is punctuation to both).
_WORD = re.compile(r"[^\W_]+")
# A term: optionally negated, a quoted phrase (its closing quote optional) or a bare run.
_TERM = re.compile(r'(-?)(?:"([^"]*)"?|([^\s"]+))')


def postgresql_ddl(name: str, indexed: str) -> list[str]:
    # '<' made a space: PostgreSQL's parser would take `<b>` for a tag, and skip what follows
    # `<script>`, words a user typed (pasted code) and means to find.
    return [
        f"ALTER TABLE {name} ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS (to_tsvector('english', replace({indexed}, '<', ' '))) STORED",
        f"CREATE INDEX ix_{name}_search_vector ON {name} USING gin (search_vector)",
    ]


def sqlite_ddl(name: str, indexed: str) -> list[str]:
    fts = f"{name}_fts"
    delete = f"INSERT INTO {fts}({fts}, rowid, {indexed}) VALUES ('delete', old.id, old.{indexed});"
    insert = f"INSERT INTO {fts}(rowid, {indexed}) VALUES (new.id, new.{indexed});"
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5({indexed}, content='{name}', "
        "content_rowid='id', tokenize='porter unicode61')",
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {name} BEGIN {insert} END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {name} BEGIN {delete} END",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {indexed} ON {name} "
        f"BEGIN {delete} {insert} END",
    ]


def _installed(connection) -> bool:
    if connection.dialect.name == "sqlite":
        found = "SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'"
    else:
        found = (
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = 'messages' AND column_name = 'search_vector'"
        )
    return connection.exec_driver_sql(found).first() is not None


@event.listens_for(db.metadata, "after_create")
def install(target, connection, **kw) -> None:
    """Add the search objects to a schema made by create_all. Checked first rather than with
    IF NOT EXISTS: PostgreSQL's ALTER TABLE locks the table even when it then does nothing."""
    if _installed(connection):
        return
    ddl = sqlite_ddl if connection.dialect.name == "sqlite" else postgresql_ddl
    for name, indexed in INDEXED:
        for statement in ddl(name, indexed):
            connection.exec_driver_sql(statement)


def include_object(object, name, type_, reflected, compare_to) -> bool:
    """Alembic's filter: the search objects are not in the models, and are not to be dropped."""
    if type_ == "table":
        return not name.startswith(FTS_TABLES)  # with FTS5's shadow tables (_data, _idx...)
    if type_ == "column":
        return name != "search_vector"
    if type_ == "index":
        return name not in SEARCH_INDEXES
    return True


class EmptyQuery(ValueError):
    """A query with no letter or digit: nothing to search for."""

    def __init__(self):
        super().__init__("Nothing to search for: give at least one word.")


@dataclass
class Query:
    """A parsed query: phrases (tuples of words) as AND of ORs, and phrases excluded."""

    groups: list[list[tuple[str, ...]]] = field(default_factory=list)
    excluded: list[tuple[str, ...]] = field(default_factory=list)


def parse(q: str) -> Query:
    """websearch_to_tsquery's language: `"a phrase"`, `a or b`, `-word`, bare words ANDed.
    Anything else is text: a run like `content:x` or `NEAR(a` is the phrase of its words."""
    if not _WORD.search(q):
        raise EmptyQuery()
    query, joined = Query(), False
    for minus, quoted, bare in _TERM.findall(q):
        text = bare or quoted
        if not minus and bare.lower() == "or":
            joined = bool(query.groups)
            continue
        words = tuple(_WORD.findall(text))
        if not words:
            continue
        if minus:
            query.excluded.append(words)
        elif joined:
            query.groups[-1].append(words)
        else:
            query.groups.append([words])
        joined = False
    return query


def fts5_query(query: Query) -> str:
    """The FTS5 MATCH string: every phrase quoted, so FTS5 reads it as text alone."""

    def phrases(items):
        return " OR ".join('"' + " ".join(words) + '"' for words in items)

    found = " AND ".join(f"({phrases(group)})" for group in query.groups)
    if query.excluded:
        found = f"({found}) NOT ({phrases(query.excluded)})"
    return found


def search(user_id: int, q: str, page: int, page_size: int) -> tuple[int, list[dict]]:
    """The number of the user's matches, and one page of them, best first: their messages
    (shown and current ones only) and their session titles. EmptyQuery with nothing to look
    for; a query that excludes only (`-word`) finds nothing."""
    query = parse(q)
    if not query.groups:
        return 0, []
    engine = _SQLite(fts5_query(query)) if _dialect() == "sqlite" else _PostgreSQL(q)
    hits = union_all(
        select(
            ChatSession.number.label("chat_id"),
            ChatSession.title,
            Message.id.label("message_id"),
            Message.is_bot,
            Message.created_at.label("timestamp"),
            engine.score(Message).label("score"),
            Message.id.label("row_id"),
        )
        .select_from(engine.source(Message))
        .join(ChatSession, ChatSession.id == Message.session_id)
        .where(
            engine.matches(Message),
            ChatSession.user_id == user_id,
            CURRENT,
        ),
        select(
            ChatSession.number,
            ChatSession.title,
            null(),
            null(),
            ChatSession.created_at,
            engine.score(ChatSession),
            ChatSession.id,
        )
        .select_from(engine.source(ChatSession))
        .where(engine.matches(ChatSession), ChatSession.user_id == user_id),
    ).subquery()
    total = db.session.scalar(select(func.count()).select_from(hits)) or 0
    rows = db.session.execute(
        page_of(
            select(hits).order_by(
                hits.c.score.desc(),
                hits.c.timestamp.desc(),
                hits.c.chat_id.desc(),
                hits.c.row_id.desc(),
            ),
            page,
            page_size,
        )
    ).all()
    # The engine marks matched words with these; random, so no text can forge one, and plain
    # letters and digits, which escaping leaves alone.
    start, stop = (f"mark{secrets.token_hex(8)}{end}" for end in ("start", "stop"))
    snippets: dict[tuple[bool, int], str] = {}
    for text, is_message in ((Message.content, True), (ChatSession.title, False)):
        ids = [r.row_id for r in rows if (r.message_id is not None) == is_message]
        if ids:
            statement = engine.snippets(text.class_, text, ids, start, stop)
            snippets |= {(is_message, i): s for i, s in db.session.execute(statement)}
    # A row deleted since the page was read has no snippet: it is left out.
    return total, [
        {
            "chat_id": r.chat_id,
            "title": r.title,
            "message_id": r.message_id,
            "is_bot": r.is_bot,
            "snippet": engine.as_html(snippet).replace(start, "<mark>").replace(stop, "</mark>"),
            "timestamp": r.timestamp,
        }
        for r in rows
        if (snippet := snippets.get((r.message_id is not None, r.row_id))) is not None
    ]


def _dialect() -> str:
    return db.session.get_bind().dialect.name


# The FTS5 tables as SQL tables: `rank` is FTS5's bm25 score, lower for a better match.
_FTS = {
    model: table(f"{model.__tablename__}_fts", column("rowid"), column("rank"))
    for model in (Message, ChatSession)
}


class _SQLite:
    """Matches through each table's FTS5 table."""

    def __init__(self, match: str):
        self.match = match

    def source(self, model):
        return _FTS[model].join(model, model.id == _FTS[model].c.rowid)

    def matches(self, model):
        return literal_column(_FTS[model].name).op("MATCH")(self.match)

    def score(self, model):
        return -_FTS[model].c.rank

    def snippets(self, model, text, ids, start, stop):
        fts = _FTS[model]
        snippet = func.snippet(literal_column(fts.name), 0, start, stop, "…", SNIPPET_WORDS)
        return select(fts.c.rowid, snippet).where(self.matches(model), fts.c.rowid.in_(ids))

    @staticmethod
    def as_html(snippet: str) -> str:
        return html.escape(snippet)


# websearch_to_tsquery and ts_headline need a regconfig, which a bound string is not.
_ENGLISH: ColumnClause[Any] = literal_column("'english'::regconfig")


class _PostgreSQL:
    """Matches each table's generated search_vector against websearch_to_tsquery."""

    def __init__(self, q: str):
        self.query = func.websearch_to_tsquery(_ENGLISH, q)

    def source(self, model):
        return model

    @staticmethod
    def _vector(model):
        return literal_column(f"{model.__tablename__}.search_vector")

    def matches(self, model):
        return self._vector(model).op("@@")(self.query)

    def score(self, model):
        return func.ts_rank(self._vector(model), self.query)

    def snippets(self, model, text, ids, start, stop):
        """ts_headline over the text already escaped: given raw text, it drops whatever
        looks like an HTML tag (and a `<script>`'s contents), which the snippet must show."""
        for character, entity in _ENTITIES:
            text = func.replace(text, character, entity)
        options = f"StartSel={start}, StopSel={stop}, MaxWords={SNIPPET_WORDS}, MinWords=8"
        snippet = func.ts_headline(_ENGLISH, text, self.query, options)
        return select(model.id, snippet).where(model.id.in_(ids))

    @staticmethod
    def as_html(snippet: str) -> str:
        return snippet  # escaped by the query


# What html.escape replaces, '&' first.
_ENTITIES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;"))
