#!/usr/bin/env bash
# One face timeline per subfolder: PARENT/<name>/ becomes OUTDIR/<name>.mp4, with its aligned frames,
# report and contact sheet in OUTDIR/<name>_frames/. Subfolders are done one after the other; a folder
# that fails is reported and the others go on.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: video_per_subfolder.sh PARENT OUTDIR [alignimate faces options...]

Makes OUTDIR/<name>.mp4 for every subfolder <name> of PARENT (hidden folders are left out).
Options after OUTDIR go to every `alignimate faces` run, e.g. --every week --caption date.

Environment: SUFFIX=mp4|webm|gif (default mp4); ALIGNIMATE: the command to run (default alignimate).
Exit status: 0 when every folder gave a timeline, 1 when some did not (see the messages).

example: video_per_subfolder.sh ~/Pictures/kids ~/timelines --every week
USAGE
}

if [[ $# -lt 2 || $1 == -h || $1 == --help ]]; then
    usage
    exit 2
fi
parent=$1
outdir=$2
shift 2
suffix=${SUFFIX:-mp4}
alignimate=${ALIGNIMATE:-alignimate}

if [[ ! -d $parent ]]; then
    echo "video_per_subfolder.sh: $parent is not a folder" >&2
    exit 2
fi
if ! command -v "$alignimate" >/dev/null 2>&1; then
    echo "video_per_subfolder.sh: '$alignimate' not found on PATH (pip install alignimate, or set ALIGNIMATE)" >&2
    exit 2
fi
mkdir -p "$outdir"

shopt -s nullglob
failed=()
made=0
outdir_real=$(cd "$outdir" && pwd -P)
for dir in "$parent"/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    # OUTDIR itself may be a subfolder of PARENT: it holds timelines, not photos.
    [[ $(cd "$dir" && pwd -P) == "$outdir_real" ]] && continue
    echo "== $name" >&2
    status=0
    "$alignimate" faces "$dir" -o "$outdir/$name.$suffix" "$@" || status=$?
    # 1 means some photos were left out (see the report); the timeline was still written.
    if [[ $status -le 1 ]]; then
        made=$((made + 1))
    else
        echo "video_per_subfolder.sh: $name failed (exit status $status)" >&2
        failed+=("$name")
    fi
done

echo "made $made timeline(s) in $outdir" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
