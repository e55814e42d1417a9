"""Settings shared by every test process.

Hypothesis explores new random examples on each local run; CI (``CI=true``, as ``.ci/run``
sets it) replays a fixed sequence, so a submission is judged on the same examples every time.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
