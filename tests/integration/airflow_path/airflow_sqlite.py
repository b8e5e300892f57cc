"""SQLite connection arguments for the test Airflow homes (`[database]
sql_alchemy_connect_args`): wait up to a minute for a write lock instead of pysqlite's 5 s.

Airflow on SQLite has several writers at once (the dag-processor reparsing every 5 s, the
scheduler, the API server, a CLI such as `airflow backfill create`); on a loaded machine one
of them can hold the lock past 5 s, and the next fails with "database is locked".
"""

CONNECT_ARGS = {"timeout": 60}
