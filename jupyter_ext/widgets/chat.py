"""A small chat panel for a deployed chat model: the card of a text deployment shows it.

Type a message and press Enter (or Send): the answer streams in token by token from the
server's ``/v1/chat/completions``. Streaming runs in a background thread that updates the
widget, so the kernel stays free for other cells while the model answers; the
conversation is kept (``panel.messages``) and sent whole each turn, as chat UIs do.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as W

_BOX = (
    "font-family:var(--jp-ui-font-family,sans-serif);font-size:12px;max-height:260px;"
    "overflow-y:auto;padding:4px 6px;border:1px solid var(--jp-border-color2,#ddd);"
    "border-radius:3px"
)


class ChatPanel(W.VBox):
    """A chat with ``deployment`` (a text :class:`~jupyter_ext.deployment.client.Deployment`).

    ``model``: which served model to talk to (default: the deployment's own name);
    ``params``: request fields such as ``max_tokens`` or ``temperature``.

    Example::

        >>> panel = ChatPanel(dep, max_tokens=64)  # doctest: +SKIP
        >>> panel.send("What is Ada's cat called?")  # doctest: +SKIP
        >>> panel.wait(); panel.messages[-1]["content"]  # doctest: +SKIP
        'Pixel.'
    """

    def __init__(self, deployment: Any, model: str | None = None, **params: Any) -> None:
        self.deployment = deployment
        self.params = {"max_tokens": 128, **params}
        self.messages: list[dict[str, str]] = []
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        names = list(getattr(deployment, "models", None) or [deployment.name])
        self.model_picker = W.Dropdown(
            options=names, value=model or names[0], layout=W.Layout(width="auto"),
            description="model", style={"description_width": "initial"},
        )  # fmt: skip
        self.transcript = W.HTML(value=self._render(), layout=W.Layout(width="100%"))
        self.prompt = W.Text(placeholder="Ask the model…", layout=W.Layout(flex="1"))
        self.send_button = W.Button(description="Send", button_style="primary")
        self.clear_button = W.Button(description="Clear")
        self.prompt.on_submit(lambda _: self.send())
        self.send_button.on_click(lambda _: self.send())
        self.clear_button.on_click(lambda _: self.reset())
        bar = W.HBox(
            [self.prompt, self.send_button, self.clear_button], layout=W.Layout(width="100%")
        )
        head = [self.model_picker] if len(names) > 1 else []
        super().__init__([*head, self.transcript, bar], layout=W.Layout(width="100%"))

    def _render(self, pending: str | None = None) -> str:
        rows = []
        for m in self.messages:
            who = "you" if m["role"] == "user" else "model"
            rows.append(f"<div><b>{who}:</b> {html.escape(m['content'])}</div>")
        if pending is not None:
            rows.append(f"<div><b>model:</b> {html.escape(pending)}▌</div>")
        if self.error:
            rows.append(f'<div style="color:#cf222e">{html.escape(self.error)}</div>')
        if not rows:
            rows.append('<div style="opacity:0.6">Type a message; the answer streams in.</div>')
        return f'<div style="{_BOX}">{"".join(rows)}</div>'

    def reset(self) -> None:
        """Forget the conversation.

        Example::

            >>> panel.reset()  # doctest: +SKIP
        """
        self.messages = []
        self.error = None
        self.transcript.value = self._render()

    def send(self, text: str | None = None) -> None:
        """Send ``text`` (default: what is typed) and stream the answer in a thread;
        returns at once. A message sent while an answer streams waits for it.

        Example::

            >>> panel.send("Hello")  # doctest: +SKIP
        """
        text = self.prompt.value if text is None else text
        if not text.strip():
            return
        self.prompt.value = ""
        self.wait()
        self.messages.append({"role": "user", "content": text})
        self.error = None
        self.transcript.value = self._render(pending="")
        self._thread = threading.Thread(target=self._stream, name="chat-panel", daemon=True)
        self._thread.start()

    def _stream(self) -> None:
        answer = ""
        self.send_button.disabled = True
        try:
            for piece in self.deployment.chat(
                list(self.messages), model=self.model_picker.value, stream=True, **self.params
            ):
                answer += piece
                self.transcript.value = self._render(pending=answer)
        except Exception as exc:
            self.error = str(exc)
        finally:
            self.messages.append({"role": "assistant", "content": answer})
            self.transcript.value = self._render()
            self.send_button.disabled = False

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the answer being streamed (for scripts and tests).

        Example::

            >>> panel.wait(30)  # doctest: +SKIP
        """
        if self._thread is not None:
            self._thread.join(timeout)
