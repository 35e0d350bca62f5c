"""Django's SQLite backend, told the real limit on query parameters, with the message search's word function.

Django 5.2 assumes SQLite's old default of 999 parameters, so a `bulk_create` of more than 66 audit rows (15
columns) became several INSERTs and a page's query count grew with its size. This asks the connection for its
limit (250,000 in Debian's SQLite, 32,766 by default since SQLite 3.32), as later Django versions do.

`mailbox_search_words(body)` is what the triggers of migration 0013 write into the FTS5 table: the words of a
message folded by `core.text.search_words`, the same folding the query gets. FTS5's own tokenizer folds only the
accents that decompose ("é"), not "ł", "ø", "æ" or "ß", which PostgreSQL's unaccent dictionary folds.
"""

from __future__ import annotations

import sqlite3

from django.db.backends.sqlite3 import base, features
from django.utils.functional import cached_property

from core.text import search_words


class DatabaseFeatures(features.DatabaseFeatures):
    @cached_property
    def max_query_params(self) -> int:
        self.connection.ensure_connection()
        return self.connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


def _search_words(body: str | None) -> str:
    return " ".join(search_words(body or ""))


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        connection.create_function("mailbox_search_words", 1, _search_words, deterministic=True)
        return connection
