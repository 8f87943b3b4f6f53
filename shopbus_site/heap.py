"""Keeping the cyclic garbage collector off what a long-running process builds as it starts."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Move every object alive now into the collector's permanent generation, which it never walks.

    A started process (Django's apps and admin, botocore's service models, moto's backends) holds
    hundreds of thousands of container objects that live until it exits. Every collection of the
    oldest generation walked them all, with the GIL held: 150–600 ms each under `make bench`, a few
    times a minute in every process, each one stalling all of a process's threads at once
    (docs/performance.md, "The tail"). Reference counting still frees frozen objects; only a cycle
    among them would outlive its use, and they are meant to live as long as the process does.
    """
    gc.collect()
    gc.freeze()
