"""Helpers shared by the Python client scripts of the integration suites.

Conventions: results go to stdout as one JSON object on the last line (`emit`); diagnostics go to
stderr; a failed expectation exits with status 1 and a one-line reason (`fail`/`check`). Every wait
has a deadline.
"""

import json
import os
import random
import sys
import time

# Deadline for one client operation (admin future, flush, consume loop).
OP_TIMEOUT = 30.0

# The gateway's storage backend (`local` or `seaweedmq`), set by the Rust test; scenarios assert
# the documented behaviour where the backends differ by design.
BACKEND = os.environ.get("KGW_TEST_BACKEND", "local")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def check_eq(actual, expected, what):
    if actual != expected:
        fail("%s: got %r, want %r" % (what, actual, expected))


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def wait_until(pred, what, timeout=OP_TIMEOUT, interval=0.1):
    """Polls `pred` until it returns a truthy value (returned) or the deadline passes (fail)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:  # retried until the deadline, reported if it persists
            last_exc = exc
        time.sleep(interval)
    fail("timed out after %.0fs waiting for %s (last error: %r)" % (timeout, what, last_exc))


def payload(index, size=None):
    """Deterministic bytes for record `index`: a readable prefix, then a random or repetitive body.

    Both producer and verifier derive the same bytes from the index alone, so a verifier in another
    process (after a gateway restart) checks content byte for byte.
    """
    rng = random.Random(index)
    if size is None:
        size = rng.choice([0, 1, 17, 100, 1000, 4096])
    prefix = b"rec-%d:" % index
    if index % 3 == 0:
        body = bytes([index % 251]) * size  # compressible
    else:
        body = rng.randbytes(size)  # incompressible
    return prefix + body


def record_key(index):
    return b"key-%d" % index
