"""Source mapping: a team's own exports -> the landing layout ingestion reads.

A YAML file maps each contract table (orders required; order_items, users, events optional)
onto a glob of the team's files (CSV, Parquet or whitespace-separated text) with reader
options, and each contract column onto a source column, a DuckDB SQL expression over the
source columns, or a constant. See README "Bring your own data" for the format.

Why a staging step rather than ingestion reading the exports directly: daily partitions,
idempotent re-ingestion, quarantine and the catch-up logic all already work on
``landing/<table>/date=YYYY-MM-DD/``. Staging reads the exports once, evaluates the mapping
in DuckDB, and writes each day's rows to ``landing/<table>/date=D/mapped.parquet`` with every
contract value as text (exactly what was read, timestamps and decimals only normalised when
they parse) plus ``_source_file`` / ``_source_line`` of the ORIGINAL export, which
ingestion keeps as lineage. Nothing is dropped here: rows that cannot be dated (an
unreadable or missing timestamp, a timestamp after today, an item whose order is unknown)
land in the table's latest day, where ingestion quarantines them with the reason.

Everything is validated before anything is written: the YAML's shape, every file the globs
must match, every column a mapping names and every expression (bound by DuckDB against the
file's columns); errors name the mapping key (``tables.orders.columns.amount``)."""
