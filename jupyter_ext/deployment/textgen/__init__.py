"""Text generation deployments: a causal LM served over the OpenAI HTTP API.

:mod:`.engine` generates with transformers' own machinery (its continuous-batching manager
for greedy requests, ``generate`` for sampled ones), :mod:`.schemas` validates request
bodies into OpenAI-shaped errors, :mod:`.openai_app` is the ASGI app (``/v1/models``,
``/v1/chat/completions``, ``/v1/completions``) and the serving process's entry point, and
:mod:`.deploy` makes such a deployment on the existing local machinery (a server process
recorded in the workspace store, listed by ``%deployments``, stopped by ``%undeploy``).
Importing this package is cheap: torch and transformers load with the engine.
"""
