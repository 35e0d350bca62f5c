"""Django's SQLite backend, told the real limit on query parameters.

Django 5.2 assumes SQLite's old default of 999 parameters, so a `bulk_create` of more than 66 audit rows (15
columns) became several INSERTs and a page's query count grew with its size. This asks the connection for its
limit (250,000 in Debian's SQLite, 32,766 by default since SQLite 3.32), as later Django versions do.
"""

from __future__ import annotations

import sqlite3

from django.db.backends.sqlite3 import base, features
from django.utils.functional import cached_property


class DatabaseFeatures(features.DatabaseFeatures):
    @cached_property
    def max_query_params(self) -> int:
        self.connection.ensure_connection()
        return self.connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures
