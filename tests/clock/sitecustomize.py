"""The tests' frozen clock in a subprocess: tests only, never on the product's path.

``tests/clock.frozen_clock`` puts this folder on PYTHONPATH and sets LOYALTY_TEST_NOW (the
test's instant, ISO 8601) and LOYALTY_TEST_NOW_SINCE (the real Unix time at which the test's
clock showed that instant). Python imports ``sitecustomize`` at start-up, so a
``python -m loyalty ...``, ``python -m loyalty.evaluation.worker`` or ``streamlit run`` a test starts
reads the same clock as the test: that instant plus the real time elapsed since, ticking.
Without LOYALTY_TEST_NOW nothing happens.
"""

import os
from datetime import UTC

if os.environ.get("LOYALTY_TEST_NOW"):
    import time
    from datetime import datetime, timedelta

    import time_machine

    _instant = datetime.fromisoformat(os.environ["LOYALTY_TEST_NOW"])
    if _instant.tzinfo is None:
        _instant = _instant.replace(tzinfo=UTC)
    _since = float(os.environ.get("LOYALTY_TEST_NOW_SINCE") or time.time())
    time_machine.travel(_instant + timedelta(seconds=time.time() - _since), tick=True).start()
    time.time()  # a ticking clock starts at its first reading: now, not after the slow imports
