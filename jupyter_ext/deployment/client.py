"""``Deployment``: a handle on a deployment recorded in the workspace store.

Any kernel can get one (``jupyter_ext.get_deployment(name)``): everything it knows comes from
the store, and the status of a local server from whether its process still lives.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .export import DeployError
from .local import log_tail, stop_group
from .protocol import API_KEY_HEADER, ModelSpec


class Deployment:
    """A served model (``target='local'``) or a built bundle (``target='bundle'``).

    Example::

        >>> dep = jupyter_ext.deploy(model, example=torch.randn(4, 13))  # doctest: +SKIP
        >>> dep.url, dep.status  # doctest: +SKIP
        ('http://127.0.0.1:41234', 'running')
        >>> dep.predict(torch.randn(2, 13)).shape  # doctest: +SKIP
        torch.Size([2, 3])
        >>> dep.stop()  # doctest: +SKIP
    """

    def __init__(
        self, record: dict[str, Any], *, api_key: str | None = None, home: Path | None = None
    ) -> None:
        self._record = record
        self.api_key = api_key
        self._home = home
        self._client: Any = None

    # -- what the store says --------------------------------------------------------------
    def _store(self) -> Any:
        from ..store import open_store

        return open_store(self._home)

    def refresh(self) -> Deployment:
        """Re-read the record from the store (another kernel may have changed it)."""
        row = self._store().get_deployment(self.name)
        if row is not None and row["created"] == self._record["created"]:
            self._record = row
        elif row is not None and row["path"] != self._record["path"]:
            self._record = {**self._record, "status": "replaced"}
        return self

    @property
    def name(self) -> str:
        return self._record["name"]

    @property
    def target(self) -> str:
        return self._record["target"]

    @property
    def engine(self) -> str | None:
        return self._record.get("engine")

    @property
    def format(self) -> str | None:
        return self._record.get("format")

    @property
    def url(self) -> str | None:
        """Base URL of a local server (``None`` for a bundle)."""
        return self._record.get("url")

    @property
    def path(self) -> Path:
        """The artifact directory (local) or the bundle directory."""
        return Path(self._record["path"])

    @property
    def pid(self) -> int | None:
        return self._record.get("pid")

    @property
    def info(self) -> dict[str, Any]:
        """Details: export reason and timings, parity, health-check time, input spec."""
        return dict(self._record.get("info") or {})

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_json(self.info["spec"])

    @property
    def max_abs_diff(self) -> float | None:
        """Largest |served - in-kernel| output difference on the example (parity check)."""
        return self.info.get("parity_max_abs_diff")

    @property
    def reason(self) -> str:
        """Why this format was chosen."""
        return self.info.get("reason", "")

    @property
    def error(self) -> str | None:
        return self._record.get("error")

    @property
    def status(self) -> str:
        """``running``, ``starting``, ``stopped``, ``failed``, ``lost`` (its process died
        without being stopped), ``replaced`` (redeployed under this name), or ``built``."""
        from ..store import process_alive

        self.refresh()
        status = self._record["status"]
        if status in ("running", "starting") and not process_alive(
            self.pid, self._record.get("pid_started")
        ):
            status = mark_lost(self._store(), self._record)
            self.refresh()
        return status

    # -- actions --------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {API_KEY_HEADER: self.api_key} if self.api_key else {}

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            self._client = httpx.Client(trust_env=False, timeout=30.0)
        return self._client

    def predict(self, x: Any, timeout: float = 30.0) -> Any:
        """Send a batch (tensor, array or nested list) to ``POST /predict``.

        Returns a tensor for a tensor input, else a numpy array.
        """
        if self.target != "local" or not self.url:
            raise DeployError(
                f"{self.name!r} is a bundle, not a running server: run `python server.py` in "
                f"{self.path} (see its README), or deploy with target='local'"
            )
        is_torch = type(x).__module__.startswith("torch")
        arr = x.detach().cpu().numpy() if is_torch else np.asarray(x)
        body = json.dumps({"inputs": arr.tolist()})
        import httpx

        try:
            r = self._http().post(
                f"{self.url}/predict",
                content=body,
                headers={"content-type": "application/json", **self._headers()},
                timeout=timeout,
            )
        except httpx.TransportError as exc:
            raise DeployError(
                f"cannot reach {self.name!r} at {self.url} ({exc}); its status is {self.status}"
            ) from None
        if r.status_code != 200:
            try:
                message = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:500]
            hint = ""
            if r.status_code == 401:
                hint = f" (pass it: get_deployment({self.name!r}, api_key=...))"
            raise DeployError(f"{self.name!r} answered {r.status_code}: {message}{hint}")
        out = np.asarray(r.json()["outputs"], dtype=self.spec.output.dtype)
        if is_torch:
            import torch

            return torch.from_numpy(out)
        return out

    def logs(self, tail: int = 200) -> str:
        """The last ``tail`` lines of the server's log (stdout and stderr)."""
        return log_tail(self._record.get("log_path"), tail)

    def stop(self) -> None:
        """Stop a local server (its whole process group); the port is free on return.

        A bundle has no server: its record is removed from the list (files stay).
        """
        store = self._store()
        self.refresh()
        if self._record.get("status") == "replaced":
            return
        if self.target == "bundle":
            store.delete_deployment(self.name)
            self._record = {**self._record, "status": "removed"}
            return
        stop_group(self.pid, self._record.get("pid_started"))
        if self._record["status"] in ("running", "starting", "lost"):
            store.update_deployment(self.name, status="stopped", ended=time.time())
        self.refresh()
        if self._client is not None:
            self._client.close()
            self._client = None

    def remove(self) -> None:
        """Stop it and forget it: delete the record and a local deployment's artifact dir."""
        self.stop()
        self._store().delete_deployment(self.name)
        if self.target == "local":
            with contextlib.suppress(OSError):
                shutil.rmtree(self.path)

    def __repr__(self) -> str:
        where = self.url if self.target == "local" else str(self.path)
        return (
            f"Deployment({self.name!r}, target={self.target}, status={self.status}, "
            f"format={self.format}, engine={self.engine}, {where})"
        )


def mark_lost(store: Any, record: dict[str, Any]) -> str:
    """Record that a running server's process is gone; returns the new status.

    Example::

        >>> mark_lost(open_store(), store.get_deployment("mlp"))  # doctest: +SKIP
        'lost'
    """
    if record["status"] == "starting" and not record.get("pid"):
        return "starting"  # not spawned yet: the deploying kernel owns this state
    store.update_deployment(
        record["name"],
        status="lost",
        ended=time.time(),
        error="the server process ended without being stopped (killed, crashed, or reboot)",
    )
    return "lost"
