"""Which database backends a test runs on.

Storage behaviour is tested on SQLite and PostgreSQL by the unit and integration tests. An
end-to-end test whose subject is not storage (a protocol, a CLI refusal, a page) runs on
SQLite only: the second backend would double its minutes and test nothing new.
"""

from __future__ import annotations

import pytest

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
