"""Where output goes: a widget front end, or text.

Widgets need a kernel with comms; in plain IPython or a script we show text instead.
Every view also carries a text/plain (and, where useful, text/html) fallback in its
mimebundle, so nbconvert output and front ends without widgets still read well.
"""

from __future__ import annotations


def in_kernel() -> bool:
    """True inside a Jupyter kernel (widgets can be displayed), False in plain IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None
