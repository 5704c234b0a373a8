#!/usr/bin/env bash
# System packages of the tests that need them, from Debian: chromium (the report opened in a real browser) and
# slurm-wlm + munge (a one-node SLURM cluster on localhost). Installed only when missing; never fails the test run:
# a test whose program could not be installed is skipped and says why.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: cannot install ${need[*]} here (needs root and apt-get): the tests that use them will be skipped"
  exit 0
fi
log=/tmp/d3hr-setup-apt.log
echo "setup: installing ${need[*]} with apt-get (log: $log)"
if ! (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}") >"$log" 2>&1; then
  echo "setup: apt-get install ${need[*]} failed (see $log): the tests that use them will be skipped"
fi
exit 0
