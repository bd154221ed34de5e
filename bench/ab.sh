#!/usr/bin/env bash
# A/B of two commits: each exported with git archive, run alternately with the newer
# commit's bench scripts (W1, W3, start latency, W2, idle RSS, reads, idle CPU, batch).
# usage: bench/ab.sh OLD NEW   (from the repository root; writes /tmp/endstate.log)
set -u
OLD=$1; NEW=$2
for c in $OLD $NEW; do rm -rf /tmp/es-$c; mkdir -p /tmp/es-$c; git archive $c | tar -x -C /tmp/es-$c; done
B=/tmp/es-$NEW/bench
PY=$PWD/.venv/bin/python
run() { local c=$1; shift; echo "### $c: $* (load $(cut -d' ' -f1-3 /proc/loadavg))"; PYTHONPATH=/tmp/es-$c/src:/tmp/es-$c/bench timeout 900 $PY "$@" 2>&1 | tail -${TAILN:-6}; }
{
date -u
for i in 1 2 3; do for c in $OLD $NEW; do TAILN=4 run $c $B/w1_throughput.py --rounds 1; done; done
for i in 1 2; do for c in $OLD $NEW; do TAILN=6 run $c $B/w3_submit.py --rounds 1; done; done
for i in 1 2; do for c in $OLD $NEW; do TAILN=3 run $c $B/start_latency.py --rounds 1; done; done
for c in $OLD $NEW; do TAILN=4 run $c $B/w2_true.py --rounds 1; done
for c in $OLD $NEW; do TAILN=8 run $c $B/idle_rss.py; done
[ -f $B/read_cpu.py ] && for i in 1 2; do for c in $OLD $NEW; do TAILN=10 run $c $B/read_cpu.py; done; done
[ -f $B/idle_cpu.py ] && for c in $OLD $NEW; do TAILN=14 run $c $B/idle_cpu.py; done
for c in $OLD $NEW; do TAILN=4 run $c $B/batch_submit.py --rounds 1; done
date -u
} > /tmp/endstate.log 2>&1
