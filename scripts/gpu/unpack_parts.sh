#!/usr/bin/env bash
# On the GPU machine, once every part of a pack script is in /tmp/kotae-parts: checks them against their
# checksums and unpacks them into a fresh /tmp/kotae-stage. setup.sh, setup_index.sh and embedder_only.sh
# start with it.
set -euo pipefail
cd /tmp/kotae-parts && sha256sum -c --quiet parts.sha256
rm -rf /tmp/kotae-stage && mkdir -p /tmp/kotae-stage && cat part.* | tar -x -C /tmp/kotae-stage
