"""Named, once-only, transactional schema migrations for the library's SQLite file."""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "001_initial",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('slide', 'image')),
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            mpp REAL,
            mpp_source TEXT NOT NULL,
            label TEXT,
            source_id TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            n_tiles INTEGER NOT NULL,
            added_at TEXT NOT NULL
        );
        CREATE INDEX sources_label ON sources(label);
        CREATE INDEX sources_source_id ON sources(source_id);
        CREATE INDEX sources_name ON sources(name);
        CREATE TABLE tiles (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
            mpp REAL,
            tissue REAL NOT NULL,
            vector BLOB NOT NULL
        );
        CREATE INDEX tiles_source ON tiles(source);
        CREATE TABLE reports (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            report_id TEXT NOT NULL UNIQUE,
            text TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            source_id TEXT,
            label TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            added_at TEXT NOT NULL
        );
        CREATE INDEX reports_source_id ON reports(source_id);
        CREATE TABLE report_vectors (
            report INTEGER NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
            space TEXT NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (report, space)
        );
        """,
    ),
    (
        "002_slide_summaries",
        """
        CREATE TABLE slide_summaries (
            source INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('mean', 'mosaic', 'bag')),
            tile_ids BLOB NOT NULL,
            boxes BLOB NOT NULL,
            weights BLOB NOT NULL,
            vectors BLOB NOT NULL,
            PRIMARY KEY (source, kind)
        );
        """,
    ),
    (
        "003_audit_log",
        """
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            token_id TEXT NOT NULL,
            action TEXT NOT NULL,
            source TEXT,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_log_at ON audit_log(at);
        """,
    ),
    (
        # a CRC32 of each stored vector: `histoseek check` finds a bit flipped on disk
        # (NULL for rows written before this migration: those are not checked)
        "004_vector_checksums",
        """
        ALTER TABLE tiles ADD COLUMN crc INTEGER;
        ALTER TABLE report_vectors ADD COLUMN crc INTEGER;
        """,
    ),
)


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration not yet applied, each in its own transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``); transactions are explicit.
    """
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO _migrations (name) VALUES (?)", (name,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
