#!/usr/bin/env bash
# On the GPU machine, once every part is in /tmp/kotae-parts: unpacks the vLLM kit (/tmp/site, /tmp/site_q),
# installs kotae's extra wheels and kotae itself into /tmp/site. Then:
#   export PYTHONPATH=/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1
set -euo pipefail
repo=$(pwd)
bash "$repo/scripts/gpu/unpack_parts.sh"
mkdir -p /tmp/gpukit/kit && tar -x -C /tmp/gpukit/kit -f /tmp/kotae-stage/kit.tar
bash /tmp/gpukit/kit/setup.sh
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/kotae-stage/wheels/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site "$repo"
# The kit installs without bytecode and the machine's Python writes none (its children run with -B), so every
# process would compile vLLM's and transformers' sources again at each start, as a user's install never does.
# The machine's own packages (torch, triton, sympy, numpy) came without it too. A file that fails to compile
# still imports from source, so compileall's exit status is ignored.
machine_site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
[ -w "$machine_site" ] || echo "setup: $machine_site is read-only: its sources compile again at each start"
python3 -m compileall -q -j 0 /tmp/site /tmp/site_q "$machine_site" > /dev/null || true
PYTHONPATH=/tmp/site python3 -c "import kotae.cli, trl, sudachipy, bm25s, openvino, nncf; print('kotae ready')"
