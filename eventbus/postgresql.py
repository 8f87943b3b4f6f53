"""psycopg's adapters as shopbus needs them on PostgreSQL."""

from __future__ import annotations


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
