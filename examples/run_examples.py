"""`make demo`: execute the example notebooks headless, in a real kernel, and show what they print.

Each notebook runs top to bottom with nbclient (as "Run All" would) in a demo workspace
(``build/demo/workspace`` unless JUPYTER_EXT_HOME is set); executed copies are saved in
``build/demo/`` for opening in JupyterLab (`make lab`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "build" / "demo"
# The journey, in order; notebooks not listed run afterwards in name order.
ORDER = [
    "accelerators.ipynb",
    "train_and_monitor.ipynb",
    "compare_experiments.ipynb",
    "deploy_model.ipynb",
    "open_model.ipynb",
]


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") in ("execute_result", "display_data"):
        return output.get("data", {}).get("text/plain", "")
    if output.get("output_type") == "error":
        return f"{output['ename']}: {output['evalue']}"
    return ""


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    OUT.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT / path.name)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        shown = "".join(_text(o) for o in cell.get("outputs", [])).strip()
        first = cell.source.splitlines()[0] if cell.source else ""
        print(f"  >>> {first}")
        if shown:
            lines = shown.splitlines()
            print("      " + "\n      ".join(lines[:12] + (["..."] if len(lines) > 12 else [])))
    return elapsed


def main() -> int:
    os.environ.setdefault("JUPYTER_EXT_HOME", str(OUT / "workspace"))
    names = [n for n in ORDER if (HERE / n).exists()]
    names += sorted(p.name for p in HERE.glob("*.ipynb") if p.name not in names)
    print(f"workspace: {os.environ['JUPYTER_EXT_HOME']}")
    for name in names:
        print(f"\n=== {name}")
        elapsed = run(HERE / name)
        print(f"=== {name}: ran in {elapsed:.1f} s; executed copy in {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
