"""``Deployment``: a handle on a deployment recorded in the workspace store.

Any kernel can get one (``jupyter_ext.get_deployment(name)``): everything it knows comes from
the store, read through :func:`.records.current` (which notices a server that died), and
stopping goes through the deployment's target, so it works from any kernel.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..procs import log_tail
from .export import DeployError
from .protocol import API_KEY_HEADER, ModelSpec

#: targets whose deployments answer HTTP at ``Deployment.url``
SERVING = ("local", "ray")

if TYPE_CHECKING:
    from ..store import DeploymentRecord, Store


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
        self, record: DeploymentRecord, *, api_key: str | None = None, home: Path | None = None
    ) -> None:
        self._record = record
        self.api_key = api_key
        self._home = home
        self._client: Any = None

    # -- what the store says --------------------------------------------------------------
    def _store(self) -> Store:
        from ..store import open_store

        return open_store(self._home)

    def refresh(self) -> Deployment:
        """Re-read the record as it is now (another kernel may have changed it; a server
        that died is recorded as ``lost``). A record of the same name made later means
        this deployment was ``replaced``."""
        from .records import current

        row = current(self._store(), self.name)
        if row is not None and row.created == self._record.created:
            self._record = row
        elif row is not None and row.path != self._record.path:
            self._record = dataclasses.replace(self._record, status="replaced")
        return self

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def target(self) -> str:
        return self._record.target

    @property
    def engine(self) -> str | None:
        return self._record.engine

    @property
    def format(self) -> str | None:
        return self._record.format

    @property
    def url(self) -> str | None:
        """Base URL of a local server or of a Ray Serve application
        (``http://HOST:8000/NAME``); ``None`` for a bundle."""
        return self._record.url

    @property
    def path(self) -> Path:
        """The artifact directory (local) or the bundle directory."""
        return Path(self._record.path or "")

    @property
    def pid(self) -> int | None:
        return self._record.pid

    @property
    def info(self) -> dict[str, Any]:
        """Details: export reason and timings, parity, health-check time, input spec."""
        return dict(self._record.info or {})

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
        return self._record.error

    @property
    def status(self) -> str:
        """``running``, ``starting``, ``stopped``, ``failed``, ``lost`` (its process died
        without being stopped), ``replaced`` (redeployed under this name), or ``built``."""
        return self.refresh()._record.status

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
        if self.is_text:
            raise DeployError(
                f"{self.name!r} serves text generation: use .chat(messages) or .complete(prompt)"
            )
        if self.target not in SERVING or not self.url:
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

    # -- text generation (a deployment serving the OpenAI API) ----------------------------
    @property
    def is_text(self) -> bool:
        """Whether this deployment serves text generation (the OpenAI API under ``/v1``)."""
        return (self._record.info or {}).get("kind") == "text"

    @property
    def models(self) -> list[str]:
        """The model names a text deployment serves (its own name, then its adapters)."""
        return list((self._record.info or {}).get("models") or [self.name])

    def _openai_post(self, route: str, body: dict[str, Any], stream: bool, timeout: float) -> Any:
        """POST to ``/v1/ROUTE``; the JSON answer, or (``stream``) the text pieces."""
        import httpx

        if not self.is_text or not self.url:
            raise DeployError(f"{self.name!r} does not serve text generation (the OpenAI API)")
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        url = f"{self.url}/v1/{route}"
        if not stream:
            try:
                r = self._http().post(url, json=body, headers=headers, timeout=timeout)
            except httpx.TransportError as exc:
                raise DeployError(f"cannot reach {self.name!r} at {self.url} ({exc})") from None
            if r.status_code != 200:
                raise self._text_error(r.status_code, r.text)
            return r.json()
        return self._pieces(url, {**body, "stream": True}, headers, timeout, route)

    def _pieces(
        self, url: str, body: dict[str, Any], headers: dict[str, str], timeout: float, route: str
    ) -> Iterator[str]:
        import httpx

        try:
            with self._http().stream("POST", url, json=body, headers=headers, timeout=timeout) as r:
                if r.status_code != 200:
                    raise self._text_error(r.status_code, r.read().decode(errors="replace"))
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event:
                        raise DeployError(f"{self.name!r} failed: {event['error']['message']}")
                    for choice in event.get("choices") or []:
                        piece = (
                            (choice.get("delta") or {}).get("content")
                            if route == "chat/completions"
                            else choice.get("text")
                        )
                        if piece:
                            yield piece
        except httpx.TransportError as exc:
            raise DeployError(f"cannot reach {self.name!r} at {self.url} ({exc})") from None

    def _text_error(self, status: int, text: str) -> DeployError:
        try:
            message = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = text[:500]
        hint = f" (pass it: get_deployment({self.name!r}, api_key=...))" if status == 401 else ""
        return DeployError(f"{self.name!r} answered {status}: {message}{hint}")

    def chat(
        self,
        messages: str | list[dict[str, Any]],
        *,
        model: str | None = None,
        stream: bool = False,
        timeout: float = 120.0,
        **params: Any,
    ) -> Any:
        """The assistant's answer to ``messages`` (a list of ``{"role", "content"}``, or a
        string: one user message), through ``POST /v1/chat/completions``.

        ``params`` are the API's (``max_tokens``, ``temperature``, ``top_p``, ``stop``,
        ``seed``; OpenAI's default temperature is 1: pass ``temperature=0`` for the greedy
        answer). ``model``: one of :attr:`models` (default: the deployment's own).
        ``stream=True`` returns an iterator of text pieces as they are generated.

        Example::

            >>> dep.chat("What is Ada's cat called?", temperature=0)  # doctest: +SKIP
            'Pixel.'
            >>> for piece in dep.chat("Hi", stream=True):  # doctest: +SKIP
            ...     print(piece, end="")
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body = {"model": model or self.name, "messages": messages, **params}
        out = self._openai_post("chat/completions", body, stream, timeout)
        return out if stream else out["choices"][0]["message"]["content"]

    def complete(
        self,
        prompt: str,
        *,
        model: str | None = None,
        stream: bool = False,
        timeout: float = 120.0,
        **params: Any,
    ) -> Any:
        """The model's continuation of ``prompt`` through ``POST /v1/completions`` (no chat
        template); ``params``, ``model`` and ``stream`` as for :meth:`chat`.

        Example::

            >>> dep.complete("The quick brown fox", max_tokens=8, temperature=0)  # doctest: +SKIP
            ' jumps over the lazy dog.'
        """
        body = {"model": model or self.name, "prompt": prompt, **params}
        out = self._openai_post("completions", body, stream, timeout)
        return out if stream else out["choices"][0]["text"]

    @property
    def serve_status(self) -> dict[str, Any] | None:
        """A Ray deployment's live state from Ray's Serve REST API: ``status`` (Ray's:
        RUNNING, DEPLOYING, UNHEALTHY, DEPLOY_FAILED, or MISSING), ``replicas``
        (``'2/2 running'``), ``replica_states``, ``target_replicas`` and Ray's
        ``message`` (e.g. why replicas cannot be scheduled); None for other targets.

        Example::

            >>> dep.serve_status["replicas"]  # doctest: +SKIP
            '2/2 running'
        """
        if self.target != "ray":
            return None
        from .targets import get_target

        return get_target("ray").serve_status(self._record)

    def scale(
        self,
        replicas: int | None = None,
        *,
        autoscaling: dict[str, Any] | None = None,
        wait: bool = True,
        timeout: float = 120.0,
    ) -> Deployment:
        """Run ``replicas`` replicas of a Ray deployment (or hand the count to Ray's
        ``autoscaling``); with ``wait``, return once that many run. Other Serve
        applications on the cluster are left as they are.

        Example::

            >>> jupyter_ext.get_deployment("mlp").scale(2)  # doctest: +SKIP
            >>> dep.scale(autoscaling={"min_replicas": 1, "max_replicas": 4})  # doctest: +SKIP
        """
        from .targets import get_target

        if self.target != "ray":
            raise DeployError(
                f"{self.name!r} is a {self.target} deployment; scale applies to target='ray' "
                "(a local server is one process: redeploy with --workers for LitServe)"
            )
        self.refresh()
        target = get_target("ray")
        self._record = target.scale(  # type: ignore[attr-defined]
            self._store(), self._record, replicas, autoscaling, wait=wait, timeout=timeout
        )
        return self

    def logs(self, tail: int = 200) -> str:
        """The last ``tail`` lines of the server's log (stdout and stderr)."""
        return log_tail(self._record.log_path, tail)

    def stop(self) -> None:
        """Stop a local server (its whole process group); the port is free on return.
        A Ray deployment's Serve application is removed from the cluster, and only it.

        A bundle has no server: its record is removed from the list (files stay).
        """
        from .targets import get_target

        self.refresh()
        if self._record.status == "replaced":
            return  # the name serves another deployment now: not ours to stop
        self._record = get_target(self.target).stop(self._store(), self._record)
        if self._client is not None:
            self._client.close()
            self._client = None

    def remove(self) -> None:
        """Stop it and forget it: delete the record and a local deployment's artifact dir."""
        from .targets import get_target

        self.stop()
        if self._record.status != "replaced":
            self._store().delete_deployment(self.name)
        home = self._home if self._home is not None else self._store().path.parent
        get_target(self.target).discard(home, self._record)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """The notebook's card: URL, format and why, parity, and a request to copy
        (:mod:`.card`); ``repr()`` stays one line."""
        from .card import card_mimebundle, text_card_mimebundle

        record = self.refresh()._record
        if self.is_text:
            return text_card_mimebundle(record, self)
        return card_mimebundle(record)

    def __repr__(self) -> str:
        where = self.url if self.target in SERVING else str(self.path)
        return (
            f"Deployment({self.name!r}, target={self.target}, status={self.status}, "
            f"format={self.format}, engine={self.engine}, {where})"
        )
