#!/usr/bin/env bash
# Runs Microsoft Presidio (presidio-analyzer) over the labelled PII/secret corpus and prints
# precision, recall and F1 per entity type, scored like tests/api/filters.rs, plus Presidio's
# throughput. For the side-by-side in BENCHMARKS.md; not part of CI.
#
#   scripts/presidio-compare.sh [CORPUS.jsonl ...] [--json PATH] [--misses] [--threshold 0.5]
#                               [--regions US,GB,...] [--accept-example-tld] [--model NAME]
#
# Default corpora: every tests/data/pii/*.jsonl. See scripts/presidio_compare.py --help.
#
# The first run creates a venv under ${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/presidio-venv
# with the machine's python3 and pip-installs the pinned packages below from PyPI; later runs
# find them and skip the install.
#
# spaCy's trained English models (en_core_web_lg, Presidio's default) are not published on PyPI:
# spaCy serves them from GitHub releases, which this workplace cannot reach. The script does not
# try PyPI names like en-core-web-lg: those are unofficial re-uploads or squatted placeholders.
# Without a model, presidio_compare.py runs Presidio's pattern recognizers on a blank spaCy
# tokenizer (no NER, which only finds PERSON, LOCATION, NRP and DATE_TIME: types the corpus does
# not label). To use a model, install the official wheel into the venv by hand
# ("$VENV/bin/pip install ./en_core_web_lg-3.8.0-py3-none-any.whl"); the script picks it up.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

CACHE="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}"
VENV="$CACHE/presidio-venv"
PYTHON="${PRESIDIO_PYTHON:-python3}"
# Pinned: presidio-analyzer, and the packages whose versions change its results (phonenumbers'
# metadata decides PHONE, tldextract's bundled suffix list decides EMAIL, spaCy tokenizes).
REQS=(presidio-analyzer==2.2.366 phonenumbers==9.0.43 tldextract==5.4.0 spacy==3.8.18)
STAMP="$VENV/.portcullis-presidio-reqs"

log() { printf '[presidio-compare] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "${REQS[*]}" ] \
  || ! "$VENV/bin/python" -c 'import presidio_analyzer' 2>/dev/null; then
  start=$(date +%s%N)
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $("$PYTHON" --version 2>&1)"
    mkdir -p "$CACHE"
    "$PYTHON" -m venv "$VENV"
  fi
  log "installing ${REQS[*]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${REQS[@]}"
  printf '%s' "${REQS[*]}" >"$STAMP"
  log "setup took $(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }') s"
else
  log "presidio venv ready ($VENV), skipping install"
fi

# The command as typed, for the report.
cmd="scripts/presidio-compare.sh"
for a in "$@"; do cmd+=" $(printf '%q' "$a")"; done
export PRESIDIO_COMPARE_CMD="$cmd"
# One core: the analyzer is single-threaded Python; keep any numeric library from spreading.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" "$here/presidio_compare.py" "$@"
