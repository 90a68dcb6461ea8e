"""Reading deployment records as they are now: the one read that may write.

A local server killed from outside (``kill -9``, out of memory, a reboot) cannot say so;
its record would read ``running`` forever. Every reader (``Deployment.status``,
``deployments()``, the sidebar) therefore reads through :func:`current`, which asks the
deployment's target what it observes and records a change (such as ``lost``). Nothing else
on a read path writes to the store.
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import TYPE_CHECKING

from .targets import get_target

if TYPE_CHECKING:
    from ..store import DeploymentRecord, Store


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_name(name: str) -> str:
    """``name`` if it can name a deployment (it appears in URLs), else a ValueError.

    Example::

        >>> check_name("wine-v2")
        'wine-v2'
    """
    if not NAME_RE.match(name):
        raise ValueError(
            f"deployment name {name!r} must be 1-63 letters, digits, '_', '.', '-' (starting "
            "with a letter or digit): it appears in URLs"
        )
    return name


def current(store: Store, ref: str | DeploymentRecord) -> DeploymentRecord | None:
    """The deployment's record as it is now (None if there is no such deployment).

    ``ref`` is a name, or a record just read (a listing), to save reading it again. When
    the target observes something the record does not say (its server died), the change
    is written, only while the record still has the status it was read with: a concurrent
    stop or redeploy is never overwritten.

    Example::

        >>> current(open_store(), "mlp").status  # doctest: +SKIP
        'lost'
    """
    record = store.get_deployment(ref) if isinstance(ref, str) else ref
    if record is None:
        return None
    seen = get_target(record.target).observe(record)
    if seen == record:
        return record
    changes = {
        f.name: getattr(seen, f.name)
        for f in fields(seen)
        if getattr(seen, f.name) != getattr(record, f.name)
    }
    store.update_deployment(record.name, only_if_status=(record.status,), **changes)
    return store.get_deployment(record.name) or seen


def current_all(store: Store) -> list[DeploymentRecord]:
    """Every deployment of the workspace as it is now (see :func:`current`), oldest first.

    Example::

        >>> [r.name for r in current_all(open_store())]  # doctest: +SKIP
        ['mlp', 'digits']
    """
    found = (current(store, r) for r in store.list_deployments())
    return [r for r in found if r is not None]
