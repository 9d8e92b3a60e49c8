"""The column names every reader recognises: the one list that `--help`, the README and the readers use;
and the names of the quantile columns every command writes.

Kept apart from the reader so that the CLI can print them without importing polars.
"""

ID_NAMES = ("unique_id", "id", "series_id", "series", "item_id", "key")
TIME_NAMES = (
    *("ds", "timestamp", "time", "date", "datetime"),
    *("when", "ts", "event_time", "date_time", "time_stamp", "period"),
    *("datum", "zeit", "zeitpunkt", "zeitstempel", "fecha", "horodatage", "tijdstip"),
)
TARGET_NAMES = ("y", "value", "target")


def quantile_column(q: float) -> str:
    """The output column (or JSON key) of quantile `q`: `q0.1`, `q0.5`, `q0.9`."""
    return f"q{q:g}"
