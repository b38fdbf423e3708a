#!/usr/bin/env python3
"""SCRAM credential administration with confluent-kafka's AdminClient.

Usage: scram_admin.py BOOTSTRAP upsert USER MECHANISM PASSWORD ITERATIONS
       scram_admin.py BOOTSTRAP delete USER MECHANISM
       scram_admin.py BOOTSTRAP describe
Prints one JSON line: {"ok": true} for alterations, {"users": {user: [[mechanism, iterations], ...]}}
for describe; a failed alteration exits 1 with the broker's error.
"""

import sys

from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from common import OP_TIMEOUT, emit, fail


def main():
    bootstrap, action = sys.argv[1], sys.argv[2]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if action == "describe":
        described = admin.describe_user_scram_credentials()
        if isinstance(described, dict):
            described = {u: f.result(timeout=OP_TIMEOUT) for u, f in described.items()}
        else:
            described = described.result(timeout=OP_TIMEOUT)
        emit({"users": {u: sorted([i.mechanism.name.replace("_", "-"), i.iterations]
                                  for i in d.scram_credential_infos)
                        for u, d in described.items()}})
        return
    user, mechanism = sys.argv[3], getattr(ScramMechanism, sys.argv[4].replace("-", "_"))
    if action == "upsert":
        password, iterations = sys.argv[5].encode(), int(sys.argv[6])
        alteration = UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, iterations), password)
    else:
        alteration = UserScramCredentialDeletion(user, mechanism)
    for u, f in admin.alter_user_scram_credentials([alteration]).items():
        try:
            f.result(timeout=OP_TIMEOUT)
        except Exception as exc:  # the broker's error, reported to the Rust test
            fail("altering %s: %s" % (u, exc))
    emit({"ok": True})


if __name__ == "__main__":
    main()
