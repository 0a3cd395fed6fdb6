"""Counts of what registry watches saw, by (service, event), for metrics to read at scrape time.

Events: ``snapshot`` (a new set of instances arrived), ``error`` (the watch failed and is being
retried; the last known set stays in use), ``held`` (instances kept after a watch reconnected to a
registry that did not show them: see ``discovery.amnesia``).
"""

from __future__ import annotations

import collections

WATCH_EVENTS: collections.Counter[tuple[str, str]] = collections.Counter()
