#!/usr/bin/env bash
# Keep a face timeline of a growing folder up to date, e.g. from cron every night.
#
# Nothing here tracks which photos are new: `alignimate faces` caches every photo's detections by its
# content hash and resumes its frames folder, so a rerun only detects and warps the photos added (or
# changed) since the last run, then rewrites the animation. When nothing in PHOTOS changed since
# OUTPUT was written, the run is skipped altogether. A lock keeps two runs from overlapping.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: nightly_update.sh PHOTOS OUTPUT [alignimate faces options...]

Rebuilds OUTPUT (timeline.mp4, .webm or .gif) from the photos in PHOTOS, processing only new photos.
Options after OUTPUT go to `alignimate faces` (use the same ones every night, or the frames are redone).

Environment: FORCE=1 runs even when nothing changed; ALIGNIMATE: the command (default alignimate).

cron example (03:00 every night):
  0 3 * * * /path/to/nightly_update.sh ~/selfies ~/timeline.mp4 --every day >> ~/timeline.log 2>&1
USAGE
}

if [[ $# -lt 2 || $1 == -h || $1 == --help ]]; then
    usage
    exit 2
fi
photos=$1
output=$2
shift 2
alignimate=${ALIGNIMATE:-alignimate}
stamp() { date '+%Y-%m-%d %H:%M:%S'; }

if [[ ! -d $photos ]]; then
    echo "nightly_update.sh: $photos is not a folder" >&2
    exit 2
fi
if ! command -v "$alignimate" >/dev/null 2>&1; then
    echo "nightly_update.sh: '$alignimate' not found on PATH (pip install alignimate, or set ALIGNIMATE)" >&2
    exit 2
fi

if command -v flock >/dev/null 2>&1; then
    exec 9>"$output.lock"
    if ! flock -n 9; then
        echo "$(stamp) nightly_update.sh: another update of $output is running; nothing done" >&2
        exit 0
    fi
fi

# A photo added, changed, removed or renamed makes the folder (or the file) newer than the output.
if [[ -e $output && ${FORCE:-0} != 1 ]] && [[ -z $(find "$photos" -newer "$output" -print -quit) ]]; then
    echo "$(stamp) nightly_update.sh: nothing new in $photos since $output was written" >&2
    exit 0
fi

echo "$(stamp) nightly_update.sh: updating $output from $photos" >&2
status=0
"$alignimate" faces "$photos" -o "$output" "$@" || status=$?
if [[ $status -gt 1 ]]; then
    echo "$(stamp) nightly_update.sh: alignimate failed (exit status $status)" >&2
    exit "$status"
fi
echo "$(stamp) nightly_update.sh: done" >&2
