#!/usr/bin/env bash
# On the GPU machine, once every part of pack_index.sh is in /tmp/kotae-parts: installs the wheels and kotae
# into /tmp/site and lays the data out as ../shared/data beside the repository. Then:
#   export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 JAX_PLATFORMS=cpu
set -euo pipefail
repo=$(pwd)
bash "$repo/scripts/gpu/unpack_parts.sh"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/kotae-stage/wheels/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site "$repo"
mkdir -p "$repo/../shared" && rm -rf "$repo/../shared/data" && ln -s /tmp/kotae-stage/data "$repo/../shared/data"
PYTHONPATH=/tmp/site python3 -c "import kotae.cli, faiss, numba, sudachipy; print('kotae index ready')"
