#!/usr/bin/env bash
# Installs what TechX needs on a fresh machine, then the Python environment.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
# The market page's test drives Debian's headless Chromium through its driver, by these paths.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
pg_bin="${TECHX_PG_BIN:-/usr/lib/postgresql/15/bin}"
if [ -z "${TECHX_DATABASE_URL:-}" ] && [ ! -x "$pg_bin/initdb" ]; then
  need_apt+=(postgresql-15)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: missing ${need_apt[*]}; install them (Debian: apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: $python is $("$python" --version 2>&1); TechX needs Python 3.11 or newer" >&2
  exit 1
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: creating .venv and installing techx-engine with its dev tools"
  "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
# The compiled core (mypyc; ~20 s once, skipped while current) and the Rust command decoder
# (cargo, from ~/.cargo/bin too; ~20-30 s once). Optional: without a C compiler or cargo the
# engine runs its pure-Python modules, the reference (TECHX_PURE_PYTHON=1 forces them).
# Rebuilt here when a source changed; until then it runs pure.
.venv/bin/python -m engine.build_compiled || true
# helm, for the Helm chart's test (tests/deploy/test_helm_chart.py): built once from the Go
# module proxy into .tools/bin (~3 min on 2 cores; Go caches the modules), then kept.
helm_version=v3.22.0
if [ "$(cat .tools/helm.version 2>/dev/null)" != "$helm_version" ] || [ ! -x .tools/bin/helm ]; then
  go="$(command -v go || echo /usr/local/go/bin/go)"
  if [ -x "$go" ]; then
    echo "bootstrap: building helm $helm_version into .tools/bin (once)"
    mkdir -p .tools/bin
    GOBIN="$PWD/.tools/bin" "$go" install "helm.sh/helm/v3/cmd/helm@$helm_version"
    echo "$helm_version" > .tools/helm.version
  else
    echo "bootstrap: no Go toolchain, so no helm; the chart's test fails unless TECHX_SKIP_HELM=1" >&2
  fi
fi
