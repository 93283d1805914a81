#!/bin/sh
# The image's build steps, in one script so the image (deploy/Dockerfile) and its smoke test
# (tests/deploy/test_image.py, on a machine without a container runtime) run the same ones.
#
#   build-venv.sh deps SRC VENV TOOLS  the locked runtime dependencies into VENV; the
#                                      locked build tools (hatchling, mypyc) and the runtime
#                                      dependencies (mypyc type-checks against them) into TOOLS
#   build-venv.sh app  SRC VENV TOOLS  the wheel built from SRC into VENV, without its
#                                      dependencies (the lock has them, `pip check` says so);
#                                      then the compiled core unless TECHX_COMPILED=0, built
#                                      in SRC (a copy: the image's /src) and copied into VENV
#
# Both steps install with --require-hashes --no-deps: nothing unpinned or unhashed gets in,
# and a dependency missing from the lock fails `pip check` here, not at import in production.
set -eu
step=$1
src=$2
venv=$3
tools=$4
python=${PYTHON:-python3}

case "$step" in
deps)
  "$python" -m venv "$tools"
  "$tools/bin/pip" install -q --require-hashes --no-deps -r "$src/deploy/build-requirements.lock"
  "$tools/bin/pip" install -q --require-hashes --no-deps -r "$src/deploy/requirements.lock"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --require-hashes --no-deps -r "$src/deploy/requirements.lock"
  ;;
app)
  wheels=$(mktemp -d)
  # pyproject force-includes schemas/json, which git does not keep while it is empty.
  mkdir -p "$src/schemas/json"
  "$tools/bin/pip" wheel -q --no-build-isolation --no-deps -w "$wheels" "$src"
  "$venv/bin/pip" install -q --no-index --no-deps "$wheels"/techx_engine-*.whl
  rm -rf "$wheels"
  "$venv/bin/pip" check
  if [ "${TECHX_COMPILED:-1}" = 1 ]; then
    # mypyc compiles in place, next to the sources (engine.native looks for the modules
    # there); the wheel leaves *.so out (.gitignore), so they join the installed package.
    (cd "$src" && "$tools/bin/python" -m engine.build_compiled --force)
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    (cd "$src" && find engine -name '*.so' -exec cp {} "$site/{}" \; \
      && cp engine/compiled-manifest.json "$site/engine/")
    # The compiled modules are the ones imported, or the build fails here.
    "$venv/bin/python" -c 'import sys, engine.core.market as m; sys.exit(not m.__file__.endswith(".so"))'
  fi
  ;;
*)
  echo "usage: build-venv.sh deps|app SRC VENV TOOLS" >&2
  exit 2
  ;;
esac
