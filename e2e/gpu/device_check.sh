#!/usr/bin/env bash
# The GPU checks of docs/gpu-validation.md in one run, on a machine with one NVIDIA GPU, as root.
# Expects PyTorch and nvidia-ml-py in python3; the agent's other needs as wheels in .whl/ (optional).
# Writes each step's JSON to $OUT (or ./gpu-check-out) and prints a summary.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-gpu-check-out}"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD:$PWD/node_agent${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,driver_version,pci.bus_id,power.limit,clocks.max.sm,mig.mode.current --format=csv
  uname -r; python3 -c 'import pynvml, torch; print("nvidia-ml-py", pynvml.__version__ if hasattr(pynvml, "__version__") else "?", "torch", torch.__version__)'
  id; grep CapEff /proc/self/status; command -v setpriv; ls -l /dev/nvidia*; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
echo "== validate_gpu"; timeout 60 python3 -m joulescale_agent.validate_gpu --index 0 > "$OUT/validate.json"; echo "rc=$?"; cat "$OUT/validate.json"
echo "== privileges"
PROBE=/tmp/privileges_probe.py; cp e2e/gpu/privileges_probe.py "$PROBE"; chmod 0644 "$PROBE"
DOCKER_CAPS=-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap
{
  python3 "$PROBE" root-all-caps
  setpriv --bounding-set=-sys_admin --inh-caps=-all python3 "$PROBE" root-without-sys_admin
  setpriv --bounding-set=$DOCKER_CAPS --inh-caps=-all python3 "$PROBE" root-container-default-caps
  setpriv --bounding-set=-all,+sys_admin --inh-caps=-all python3 "$PROBE" root-only-sys_admin
  setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+sys_admin --ambient-caps=-all,+sys_admin python3 "$PROBE" nonroot-with-sys_admin
  setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all python3 "$PROBE" nonroot-no-caps
} > "$OUT/privileges.jsonl" 2>&1
cat "$OUT/privileges.jsonl"
nvidia-smi -rgc >/dev/null 2>&1 || true
echo "== calibrate"; timeout 150 python3 e2e/gpu/calibrate.py ${CALIBRATE_ARGS:-} > "$OUT/calibrate.json"; echo "rc=$?"; cat "$OUT/calibrate.json"
echo "== agent on the GPU"; timeout 150 python3 -m e2e.gpu.agent_on_gpu > "$OUT/agent.json"; echo "rc=$?"; cat "$OUT/agent.json"
nvidia-smi -rgc >/dev/null 2>&1 || true
nvidia-smi --query-gpu=clocks.sm,clocks_event_reasons.active --format=csv
