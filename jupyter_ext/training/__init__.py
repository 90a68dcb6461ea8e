"""Training runs, on both sides of the process boundary.

(Named ``training``, not ``runs``: a subpackage becomes an attribute of its parent when
imported, and ``jupyter_ext.runs`` must stay the public ``runs()`` function.)

Kernel side (imports nothing heavy until called): :mod:`.run` (``train()``, ``Run``,
``runs()``, ``get_run()``), :mod:`.resolve` (run references to records), :mod:`.frames`
(records and metric series as what views show), :mod:`.payload` (cloudpickle of the
cell's objects), :mod:`.trainer_args` (Trainer argument checks) and :mod:`.launchers`
(where a worker is started: ``local``).

Worker side (``python -m jupyter_ext.training.worker``): :mod:`.worker` (one run to its end),
:mod:`.callbacks` (progress, stop, checkpoints), :mod:`.store_logger` (metrics into the
store). The worker reads only the store and its run directory, so a launcher may start
it on another machine.
"""
