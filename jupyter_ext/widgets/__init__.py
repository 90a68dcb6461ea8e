"""ipywidgets views. Each polls the store or the system, never a worker."""
