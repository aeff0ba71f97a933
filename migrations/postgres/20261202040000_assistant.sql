-- The assistant (issue 10): the knowledge base it answers from, and users' threads.
--
-- A document's text is split into overlapping chunks (`knowledge_chunks`), the unit that is
-- searched and cited. PostgreSQL indexes each chunk with a generated `tsvector` (title and tags
-- weighted above the text) under a GIN index, so the index changes in the statement (and the
-- transaction) that changes the chunk. SQLite uses an FTS5 table kept by triggers instead.
CREATE TABLE knowledge_documents (
    id           TEXT PRIMARY KEY NOT NULL,
    slug         TEXT UNIQUE,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    tags         TEXT NOT NULL,
    shipped_hash TEXT,
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX knowledge_documents_updated ON knowledge_documents (updated_at, id);

CREATE TABLE knowledge_chunks (
    id          TEXT PRIMARY KEY NOT NULL,
    document_id TEXT NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    title       TEXT NOT NULL,
    tags        TEXT NOT NULL,
    content     TEXT NOT NULL,
    search      tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title || ' ' || tags), 'A') ||
        setweight(to_tsvector('english', content), 'B')
    ) STORED
);
CREATE INDEX knowledge_chunks_document ON knowledge_chunks (document_id, position);
CREATE INDEX knowledge_chunks_search ON knowledge_chunks USING GIN (search);

CREATE TABLE assistant_threads (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    title      TEXT NOT NULL,
    placement  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX assistant_threads_user ON assistant_threads (user_id, updated_at);

-- The one thread of each user that `POST /api/cape_ai/chat` (the production client) writes to.
CREATE TABLE assistant_compat_threads (
    user_id   TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    thread_id TEXT NOT NULL REFERENCES assistant_threads (id) ON DELETE CASCADE
);

CREATE TABLE assistant_messages (
    id            TEXT PRIMARY KEY NOT NULL,
    thread_id     TEXT NOT NULL REFERENCES assistant_threads (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id),
    role          TEXT NOT NULL,
    content       TEXT NOT NULL,
    provider      TEXT,
    model         TEXT,
    citations     TEXT NOT NULL,
    input_tokens  BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX assistant_messages_thread ON assistant_messages (thread_id, created_at);
CREATE INDEX assistant_messages_user ON assistant_messages (user_id, created_at);
