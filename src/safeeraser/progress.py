"""Progress bars: tqdm, off when a caller asks, and otherwise as the user's ``TQDM_*`` settings say.

tqdm reads ``TQDM_DISABLE``, ``TQDM_MININTERVAL`` and the like from the environment, but only
for options a caller leaves out; so ``disable`` is passed only to switch a bar off.
"""

from __future__ import annotations


def bar(*args, enabled: bool = True, **options):
    from tqdm.auto import tqdm

    if not enabled:
        options["disable"] = True
    options.setdefault("dynamic_ncols", True)
    return tqdm(*args, **options)
