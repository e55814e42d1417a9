"""Run a study with the fake trainer in its own process (for kill / concurrency tests).

usage: python run_fake.py SPEC STORAGE NAME WORKERS TRAINER
(TRAINER: a name from ``fake_trainer.name(...)``)
"""

import signal
import sys

from cnnlab.errors import CnnlabError
from cnnlab.study import load_spec, run_study

spec_path, storage, name, workers, trainer = sys.argv[1:6]
# Act like a foreground `cnnlab study run` even when the test suite itself was started in the
# background, where the shell makes every child ignore SIGINT (the Ctrl-C the tests send).
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    s = run_study(
        load_spec(spec_path),
        storage,
        name,
        int(workers),
        trainer=trainer,
        progress=False,
        heartbeat=1,
        grace=3,
    )
except CnnlabError as e:
    print(f"cnnlab: error: {e}", file=sys.stderr)
    sys.exit(2)
except KeyboardInterrupt:
    print("cnnlab: error: interrupted", file=sys.stderr)
    sys.exit(130)
print(f"complete {s.complete}/{s.planned} enqueued {s.enqueued}")
