"""psycopg's adapters as shopbus needs them on PostgreSQL."""

from __future__ import annotations

# The most parameters of a statement whose conversion psycopg keeps (its own limit is 50): a receive's
# set of rows, twenty outbox rows of fourteen columns, fits; a metrics flush of hundreds of rows,
# whose texts differ with every row count, still goes uncached.
CACHED_STATEMENT_PARAMETERS = 400


def let_psycopg_cache_set_statements() -> None:
    """psycopg turns each statement's %s placeholders into PostgreSQL's $n in Python, and memoises the
    result only for statements of at most 50 parameters. A receive's dedupe INSERT of ten rows has
    70, its outbox and audit INSERTs more, so each was converted afresh on every receive: about 5% of
    a worker's time per delivery on PostgreSQL (docs/performance.md, item 27). psycopg's own memo (128
    statements, least recently used first) then holds these too: the same few texts every receive."""
    try:
        from psycopg import _queries
    except ImportError:  # not installed: SQLite only
        return
    if isinstance(getattr(_queries, "MAX_CACHED_STATEMENT_PARAMS", None), int):
        _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, CACHED_STATEMENT_PARAMETERS)


def refuse_integers_out_of_range() -> None:
    """With server-side binding (DATABASE_PREPARED_STATEMENTS, as the workers run), Django sends an
    integer column's value as psycopg's Int2, Int4 or Int8, and psycopg's binary dumpers for those
    keep the low bytes of a value too large for the type: 70,000 saved to a smallint column was
    stored as 4,464, where PostgreSQL refuses it ("smallint out of range") when the value is sent as
    text, as it is without server-side binding. Registering the text dumpers last makes them the ones
    psycopg picks for %s placeholders, so the database checks the range in both modes. Text costs
    nothing measurable here: an integer's text is a few bytes, parsed once per parameter."""
    try:
        import psycopg
        from psycopg.types.numeric import Int2, Int2Dumper, Int4, Int4Dumper, Int8, Int8Dumper
    except ImportError:  # not installed: SQLite only
        return
    for wrapper, dumper in ((Int2, Int2Dumper), (Int4, Int4Dumper), (Int8, Int8Dumper)):
        psycopg.adapters.register_dumper(wrapper, dumper)
