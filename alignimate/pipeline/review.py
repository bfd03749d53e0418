"""``review``: one self-contained HTML page to look through a run's frames and mark the bad ones.

``write_review(out)`` reads ``out/transforms.json`` (written by ``register``, ``apply`` or
``faces``) and writes ``out/review.html``: a flip-book of the frames (play, pause, step, speed),
an onion-skin and a difference view against the reference frame, each frame's status, loss and
reason, and the photos that were skipped, with their reasons. Frames can be marked "exclude"; the
page saves the marks as an exclusion file (:mod:`alignimate.pipeline.exclusions`) that
``animate --exclude FILE`` reads.

The page needs no server and no network: every image is inside it as a ``data:`` URI, a JPEG copy
whose long side is at most ``max_side`` pixels (:data:`DEFAULT_MAX_SIDE`), so a run of a thousand
photos stays a page a browser opens at once. Skipped photos are shown from their originals at
half that bound, when they can be read.

Like every file a job writes into an output folder, the page is claimed in the folder's ledger
first and written atomically (:mod:`alignimate.pipeline.outputs`); the folder's lock keeps it from
being written while another run is writing there. Everything read back (transforms.json, the
frames) is untrusted: names and reasons reach the page only as JSON, escaped so that no text of
theirs can close the script element, and the page's script puts them in as text, never as HTML.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

from alignimate import __version__
from alignimate.errors import UsageError
from alignimate.io import PhotoError, atomic_write, read_image
from alignimate.pipeline.exclusions import EXCLUSIONS_FORMAT, EXCLUSIONS_VERSION
from alignimate.pipeline.frame_writer import default_workers
from alignimate.pipeline.outputs import OutputFolder, failure_from_os_error
from alignimate.pipeline.records import REPORT_NAME, TRANSFORMS_NAME, PhotoRecord, RunRecord, read_transforms

__all__ = ["DEFAULT_MAX_SIDE", "MAX_SIDE_RANGE", "REVIEW_NAME", "write_review"]

REVIEW_NAME = "review.html"
DEFAULT_MAX_SIDE = 384
"""Long side of the frame copies in the page, pixels (skipped photos: half of it)."""
MAX_SIDE_RANGE = (64, 2048)
_JPEG_QUALITY = 80


@dataclass
class _Job:
    """One image the page embeds: a kept frame or a skipped photo's original."""

    record: PhotoRecord
    path: Path | None
    side: int
    kept: bool
    problem: str = ""


def _encode(path: Path, side: int) -> str:
    """``path`` read upright, shrunk to a long side of at most ``side`` and encoded as a JPEG data URI."""
    pixels = read_image(path, max_side=side)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _encode_job(job: _Job) -> str | None:
    if job.path is None:
        return None
    try:
        return _encode(job.path, job.side)
    except PhotoError as err:
        if job.kept:
            job.problem = f"its frame {job.record.output} cannot be read: {err.reason}"
        return None


def _in_order(jobs: list[_Job], workers: int) -> Iterator[tuple[_Job, str | None]]:
    """Encoded jobs in ``jobs`` order, ``workers`` at a time (Pillow decodes without the GIL); at
    most twice that many results wait, so memory does not grow with the number of frames."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[_Job, Future[str | None]]] = deque()
        queue = iter(jobs)
        for job in queue:
            pending.append((job, pool.submit(_encode_job, job)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            job, future = pending.popleft()
            yield job, future.result()
            following = next(queue, None)
            if following is not None:
                pending.append((following, pool.submit(_encode_job, following)))


def _plan(run: RunRecord, folder: OutputFolder, side: int) -> list[_Job]:
    """What to embed for each photo, in the run's order. A frame is shown only when it is one of
    alignimate's files in the folder and a regular file: a name in a hand-edited transforms.json
    cannot bring another file of the folder into the page as a frame."""
    jobs = []
    for record in run.photos:
        output = record.output
        if output is not None and output not in (TRANSFORMS_NAME, REPORT_NAME, REVIEW_NAME):
            path = folder.path / output
            if folder.owns(output) and path.is_file():
                jobs.append(_Job(record, path, side, kept=True))
                continue
            problem = f"its frame {output} is missing" if folder.owns(output) else (
                f"its frame {output} is not one of alignimate's files"
            )
            jobs.append(_Job(record, None, side, kept=True, problem=problem))
            continue
        source = Path(record.source) if record.source else None
        problem = "no frame was written" if record.usable else ""
        jobs.append(_Job(record, source, max(32, side // 2), kept=False, problem=problem))
    return jobs


def _entry(record: PhotoRecord, index: int, image: int | None) -> dict[str, Any]:
    return {
        "index": index,
        "name": record.name,
        "status": record.status,
        "reason": record.reason,
        "loss": record.loss,
        "converged": record.converged,
        "datetime": record.datetime,
        "output": record.output,
        "image": image,
    }


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` in its text."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _save_name(folder: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", folder.resolve().name).strip("._") or "review"
    return f"{stem[:80]}-exclusions.json"


def _write_page(
    stream: TextIO, run: RunRecord, folder: OutputFolder, jobs: list[_Job], side: int, workers: int
) -> dict[str, int]:
    """Write the page to ``stream``: markup, the images (one JSON array, streamed), the run's
    metadata, the script. Returns counts for the caller's message."""
    title = f"alignimate review: {folder.path.resolve().name}"
    stream.write(_HEAD.replace("__TITLE__", html.escape(title)))
    stream.write('<script type="application/json" id="review-images">[')
    frames: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    count = 0
    for index, (job, uri) in enumerate(_in_order(jobs, workers)):
        image = None
        if uri is not None:
            stream.write(("," if count else "") + json.dumps(uri))
            image, count = count, count + 1
        if job.kept and image is not None:
            frames.append(_entry(job.record, index, image))
        else:
            entry = _entry(job.record, index, image)
            if job.problem:
                entry["reason"] = "; ".join(r for r in (job.record.reason, job.problem) if r)
            others.append(entry)
    stream.write("]</script>\n")
    reference = next((i for i, f in enumerate(frames) if f["name"] == run.reference), None)
    if reference is not None:
        note = f"the reference photo, {run.reference}"
    elif frames:
        reference = 0
        why = "this run has no reference photo" if run.reference is None else "the reference has no frame"
        note = f"the first frame, {frames[0]['name']} ({why})"
    else:
        note = "none (no frames)"
    meta = {
        "format": "alignimate-review",
        "version": 1,
        "alignimate": __version__,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "command": run.command,
        "input": run.input,
        "folder": str(folder.path.resolve()),
        "outputSize": run.output_size,
        "maxSide": side,
        "reference": reference,
        "referenceNote": note,
        "exclusions": {"format": EXCLUSIONS_FORMAT, "version": EXCLUSIONS_VERSION},
        "storageKey": f"alignimate-review:{folder.path.resolve()}",
        "saveName": _save_name(folder.path),
        "frames": frames,
        "others": others,
    }
    stream.write(f'<script type="application/json" id="review-meta">{_script_json(meta)}</script>\n')
    stream.write(_SCRIPT)
    stream.write("</body>\n</html>\n")
    return {"frames": len(frames), "others": len(others)}


def write_review(
    out: str | os.PathLike[str],
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write ``out/review.html`` for the output folder of a ``register``, ``apply`` or ``faces`` run.

    Args:
        out: the output folder (``faces``: its frames folder, ``<output stem>_frames/``); it must
            hold the run's transforms.json.
        max_side: long side of the frame copies in the page, pixels (:data:`MAX_SIDE_RANGE`).
        workers: frames decoded at once (default: one per CPU core, at most 4).
        log: called with one line of progress.

    Returns:
        The page's path. A page written earlier is replaced; a ``review.html`` that alignimate did
        not write is not (:class:`UsageError`).

    Raises:
        UsageError: ``out`` is not such a folder, its transforms.json cannot be used, another run
            is writing into it, or ``max_side`` is out of range.
        RunError: the page cannot be written (a full disk, a missing permission).
    """
    log = log or (lambda _msg: None)
    folder_path = Path(out)
    if isinstance(max_side, bool) or not isinstance(max_side, int):
        raise UsageError(f"--max-side must be a whole number of pixels, got {max_side!r}")
    if not MAX_SIDE_RANGE[0] <= max_side <= MAX_SIDE_RANGE[1]:
        low, high = MAX_SIDE_RANGE
        raise UsageError(f"--max-side must be between {low} and {high}, got {max_side}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UsageError(f"workers must be a positive int, got {workers!r}")
    if not folder_path.is_dir():
        raise UsageError(
            f"{folder_path}: not a folder; review reads the output folder of register, apply or faces"
        )
    transforms = folder_path / TRANSFORMS_NAME
    if not transforms.is_file():
        raise UsageError(
            f"{folder_path}: has no {TRANSFORMS_NAME}; review reads the output folder of a finished "
            f"register, apply or faces run"
        )
    try:
        run = read_transforms(transforms)
    except ValueError as err:
        raise UsageError(str(err)) from None
    # Reopened under the run's own command, so the ledger stays that run's and a later
    # --overwrite of the run also removes the page.
    with OutputFolder.open(
        folder_path, command=run.command, hint="review writes only into an output folder of alignimate"
    ) as folder:
        if not folder.owns(TRANSFORMS_NAME):
            raise UsageError(f"{transforms}: not one of alignimate's files in this folder (its ledger)")
        if not folder.is_free(REVIEW_NAME):
            raise UsageError(
                f"{folder_path / REVIEW_NAME}: exists and alignimate did not write it; move it away"
            )
        folder.claim([REVIEW_NAME])
        target = folder.path_of(REVIEW_NAME)
        jobs = _plan(run, folder, max_side)
        try:
            with atomic_write(target) as tmp, tmp.open("w", encoding="utf-8") as stream:
                counts = _write_page(stream, run, folder, jobs, max_side, workers or default_workers())
        except OSError as err:
            raise failure_from_os_error(err, "write the review page") from None
    size_mb = target.stat().st_size / 1e6
    log(
        f"review page: {counts['frames']} frames, {counts['others']} other photos, {size_mb:.1f} MB "
        f"(frames at most {max_side} px)"
    )
    return target


def _lines(*parts: Iterable[str]) -> str:
    return "".join(line + "\n" for part in parts for line in part)


# The page's markup and style. Kept plain (no framework, no external resource) so the file works
# from disk in any current browser.
_HEAD = _lines(
    [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network at all: the page may not load anything from anywhere, only its own inline parts.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data: blob:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        "<title>__TITLE__</title>",
        "<style>",
        "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#1c1c1e;color:#e8e8e8}",
        "header,main,section{padding:8px 16px}",
        "h1{font-size:18px;margin:4px 0}h2{font-size:16px;margin:12px 0 4px}",
        ".muted{color:#9a9a9f}",
        ".layout{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}",
        ".stage{position:relative;display:inline-block;background:#000;line-height:0;max-width:100%}",
        "#frame-img{position:relative;z-index:1;max-width:min(100%,960px);image-rendering:auto}",
        "#ref-img,#diff-canvas{position:absolute;left:0;top:0;width:100%;height:100%}",
        "#ref-img{z-index:0}#diff-canvas{z-index:2}",
        ".hidden{display:none!important}",
        ".controls{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:8px 0}",
        "button,select,input{font:inherit}",
        "button{background:#3a3a3c;color:#fff;border:1px solid #555;border-radius:4px;padding:3px 10px}",
        "button:hover{background:#4a4a4c}",
        ".info{min-width:260px;max-width:480px}",
        ".info dt{color:#9a9a9f}.info dd{margin:0 0 6px 0;word-break:break-all}",
        ".st-reference{color:#6cb4ff}.st-aligned{color:#7ad67a}.st-skipped,.st-pending{color:#ff7a7a}",
        "table{border-collapse:collapse;width:100%}",
        "td,th{border-bottom:1px solid #333;padding:2px 6px;text-align:left;vertical-align:top}",
        "tr.current{background:#2c3e50}tr.excluded td.name{text-decoration:line-through;color:#ff9a9a}",
        "#frames-table tbody tr{cursor:pointer}",
        ".skipped-list{display:flex;flex-wrap:wrap;gap:12px}",
        ".skipped-item{width:200px}.skipped-item img{max-width:192px;border:2px solid #dc1e1e}",
        ".noimage{width:192px;height:64px;background:#3a3a3c;display:flex;align-items:center;"
        "justify-content:center;color:#9a9a9f}",
        "pre{background:#111;padding:8px;max-height:200px;overflow:auto}",
        "</style>",
        "</head>",
        "<body>",
        "<header>",
        '<h1 id="title"></h1>',
        '<div class="muted" id="summary"></div>',
        "</header>",
        "<main>",
        '<div class="layout">',
        "<div>",
        '<div class="stage" id="stage">',
        '<img id="ref-img" class="hidden" alt="reference frame">',
        '<img id="frame-img" alt="frame">',
        '<canvas id="diff-canvas" class="hidden"></canvas>',
        "</div>",
        '<div class="controls">',
        '<button id="prev" title="previous frame (left arrow)">&#9664;</button>',
        '<button id="play" title="play or pause (space)">Play</button>',
        '<button id="next" title="next frame (right arrow)">&#9654;</button>',
        '<input id="position" type="range" min="0" max="0" value="0" aria-label="frame">',
        '<span id="position-label"></span>',
        "</div>",
        '<div class="controls">',
        '<label>speed <select id="speed">'
        + "".join(
            f'<option value="{v}"{" selected" if v == "8" else ""}>{v} fps</option>'
            for v in ("0.5", "1", "2", "4", "8", "12", "24", "48")
        )
        + "</select></label>",
        '<label>view <select id="mode"><option value="frame">frame</option>'
        '<option value="onion">onion skin over the reference</option>'
        '<option value="difference">difference from the reference</option></select></label>',
        '<label id="opacity-label" class="hidden">frame opacity '
        '<input id="opacity" type="range" min="0" max="1" step="0.05" value="0.5"></label>',
        '<label id="amplify-label" class="hidden"><input id="amplify" type="checkbox"> '
        "4x brighter differences</label>",
        "</div>",
        '<div class="controls">',
        '<label><input id="exclude" type="checkbox"> exclude this frame (x)</label>',
        '<label><input id="skip-excluded" type="checkbox"> skip excluded frames when playing</label>',
        "</div>",
        '<div class="controls">',
        '<button id="save">Save exclusions</button>',
        '<label>load a saved file <input id="load" type="file" accept=".json,application/json"></label>',
        '<button id="clear">Clear marks</button>',
        '<span id="excluded-count"></span>',
        "</div>",
        '<div class="muted" id="save-status"></div>',
        "</div>",
        '<dl class="info">',
        '<dt>photo</dt><dd id="frame-name"></dd>',
        '<dt>status</dt><dd id="frame-status"></dd>',
        '<dt>loss</dt><dd id="frame-loss"></dd>',
        '<dt>reason</dt><dd id="frame-reason"></dd>',
        '<dt>taken</dt><dd id="frame-date"></dd>',
        '<dt>frame file</dt><dd id="frame-output"></dd>',
        '<dt>compared with</dt><dd id="reference-note"></dd>',
        "</dl>",
        "</div>",
        "<section>",
        '<h2>How to use the marks</h2><p class="muted" id="usage"></p>',
        '<details><summary>exclusion file contents</summary><pre id="exclusions-text"></pre></details>',
        "</section>",
        "<section>",
        '<h2 id="frames-heading">Frames</h2>',
        '<table id="frames-table"><thead><tr><th>#</th><th>photo</th><th>status</th><th>loss</th>'
        "<th>reason</th><th>exclude</th></tr></thead><tbody></tbody></table>",
        "</section>",
        "<section>",
        '<h2 id="others-heading">Skipped photos</h2>',
        '<div class="skipped-list" id="others"></div>',
        "</section>",
        "</main>",
    ]
)

# The page's behaviour. Every text from the run is placed with textContent (never innerHTML).
_SCRIPT = _lines(
    [
        "<script>",
        '"use strict";',
        "(function () {",
        "const meta = JSON.parse(document.getElementById('review-meta').textContent);",
        "const images = JSON.parse(document.getElementById('review-images').textContent);",
        "const frames = meta.frames;",
        "const names = new Set(frames.map(f => f.name));",
        "const $ = id => document.getElementById(id);",
        "const frameImg = $('frame-img'), refImg = $('ref-img'), canvas = $('diff-canvas');",
        "let index = 0, timer = null, excluded = new Set();",
        "const refFrame = meta.reference === null ? null : frames[meta.reference];",
        "",
        "function text(el, value) {",
        "  el.textContent = value === null || value === undefined ? '' : String(value);",
        "}",
        "function lossText(loss) { return typeof loss === 'number' ? loss.toPrecision(4) : '\\u2014'; }",
        "",
        "// Marks are remembered per output folder; a browser that refuses storage still works.",
        "function remember() {",
        "  try { localStorage.setItem(meta.storageKey, JSON.stringify([...excluded])); } catch (e) {}",
        "}",
        "function recall() {",
        "  try {",
        "    const stored = JSON.parse(localStorage.getItem(meta.storageKey) || '[]');",
        "    if (Array.isArray(stored)) stored.forEach(n => { if (names.has(n)) excluded.add(n); });",
        "  } catch (e) {}",
        "}",
        "",
        "function exclusionsText() {",
        "  const data = {format: meta.exclusions.format, version: meta.exclusions.version,",
        "    exclude: [...excluded].sort(), input: meta.input, output: meta.folder,",
        "    saved: new Date().toISOString()};",
        "  return JSON.stringify(data, null, 2) + '\\n';",
        "}",
        "",
        "function refreshMarks() {",
        "  text($('excluded-count'), excluded.size + ' of ' + frames.length + ' frames excluded');",
        "  text($('exclusions-text'), exclusionsText());",
        "  $('exclude').checked = frames.length > 0 && excluded.has(frames[index].name);",
        "  document.querySelectorAll('#frames-table tbody tr').forEach((row, i) => {",
        "    const out = excluded.has(frames[i].name);",
        "    row.classList.toggle('excluded', out);",
        "    row.querySelector('input').checked = out;",
        "  });",
        "}",
        "",
        "function setExcluded(name, value) {",
        "  if (value) excluded.add(name); else excluded.delete(name);",
        "  remember();",
        "  refreshMarks();",
        "}",
        "",
        "function drawDifference() {",
        "  if (!refFrame || $('mode').value !== 'difference') return;",
        "  const ref = new Image(), cur = new Image();",
        "  ref.src = images[refFrame.image];",
        "  cur.src = images[frames[index].image];",
        "  const shown = index;",
        "  Promise.all([ref.decode(), cur.decode()]).then(() => {",
        "    if (shown !== index) return;",
        "    canvas.width = ref.naturalWidth; canvas.height = ref.naturalHeight;",
        "    const ctx = canvas.getContext('2d');",
        "    ctx.globalCompositeOperation = 'source-over';",
        "    ctx.drawImage(ref, 0, 0);",
        "    ctx.globalCompositeOperation = 'difference';",
        "    ctx.drawImage(cur, 0, 0, canvas.width, canvas.height);",
        "    if ($('amplify').checked) {",
        "      // Small misalignments are faint: brighten the difference image onto itself.",
        "      const plain = document.createElement('canvas');",
        "      plain.width = canvas.width; plain.height = canvas.height;",
        "      plain.getContext('2d').drawImage(canvas, 0, 0);",
        "      ctx.globalCompositeOperation = 'source-over';",
        "      ctx.filter = 'brightness(4)';",
        "      ctx.drawImage(plain, 0, 0);",
        "      ctx.filter = 'none';",
        "    }",
        "    canvas.dataset.frame = frames[shown].name;",
        "  }).catch(() => {});",
        "}",
        "",
        "function applyMode() {",
        "  const mode = $('mode').value;",
        "  const hasRef = refFrame !== null;",
        "  refImg.classList.toggle('hidden', !(hasRef && mode === 'onion'));",
        "  canvas.classList.toggle('hidden', !(hasRef && mode === 'difference'));",
        "  $('opacity-label').classList.toggle('hidden', mode !== 'onion');",
        "  $('amplify-label').classList.toggle('hidden', mode !== 'difference');",
        "  frameImg.style.opacity = mode === 'onion' && hasRef ? $('opacity').value : '1';",
        "  drawDifference();",
        "}",
        "",
        "function show(i) {",
        "  if (!frames.length) return;",
        "  index = ((i % frames.length) + frames.length) % frames.length;",
        "  const f = frames[index];",
        "  frameImg.src = images[f.image];",
        "  frameImg.dataset.name = f.name;",
        "  text($('frame-name'), f.name);",
        "  const status = $('frame-status');",
        "  text(status, f.status + (f.converged === false ? ' (did not converge)' : ''));",
        "  status.className = 'st-' + f.status;",
        "  text($('frame-loss'), lossText(f.loss));",
        "  text($('frame-reason'), f.reason || '\\u2014');",
        "  text($('frame-date'), f.datetime || '\\u2014');",
        "  text($('frame-output'), f.output);",
        "  text($('position-label'), (index + 1) + ' / ' + frames.length);",
        "  $('position').value = index;",
        "  $('exclude').checked = excluded.has(f.name);",
        "  const rows = document.querySelectorAll('#frames-table tbody tr');",
        "  rows.forEach(r => r.classList.remove('current'));",
        "  const row = rows[index];",
        "  if (row) row.classList.add('current');",
        "  drawDifference();",
        "}",
        "",
        "function step(delta) {",
        "  // While playing with 'skip excluded' on, excluded frames are stepped over (when any is left).",
        "  let i = index;",
        "  for (let n = 0; n < frames.length; n++) {",
        "    i += delta;",
        "    const name = frames[((i % frames.length) + frames.length) % frames.length].name;",
        "    if (!(timer !== null && $('skip-excluded').checked && excluded.has(name))) break;",
        "  }",
        "  show(i);",
        "}",
        "",
        "function stop() {",
        "  if (timer !== null) clearInterval(timer);",
        "  timer = null;",
        "  text($('play'), 'Play');",
        "}",
        "function play() {",
        "  stop();",
        "  if (frames.length < 2) return;",
        "  timer = setInterval(() => step(1), 1000 / parseFloat($('speed').value));",
        "  text($('play'), 'Pause');",
        "}",
        "",
        "function save() {",
        "  const blob = new Blob([exclusionsText()], {type: 'application/json'});",
        "  const link = document.createElement('a');",
        "  link.href = URL.createObjectURL(blob);",
        "  link.download = meta.saveName;",
        "  document.body.appendChild(link);",
        "  link.click();",
        "  link.remove();",
        "  setTimeout(() => URL.revokeObjectURL(link.href), 10000);",
        "  text($('save-status'), 'saved ' + excluded.size + ' marks as ' + meta.saveName +",
        "    ' (in your downloads folder)');",
        "}",
        "",
        "function load(file) {",
        "  file.text().then(body => {",
        "    const data = JSON.parse(body);",
        "    if (!data || data.format !== meta.exclusions.format || !Array.isArray(data.exclude))",
        "      throw new Error('not an alignimate exclusion file');",
        "    excluded = new Set(data.exclude.filter(n => names.has(n)));",
        "    remember();",
        "    refreshMarks();",
        "    text($('save-status'), 'loaded ' + excluded.size + ' marks from ' + file.name);",
        "  }).catch(err => text($('save-status'), 'cannot load ' + file.name + ': ' + err.message));",
        "}",
        "",
        "function build() {",
        "  text($('title'), document.title);",
        "  const skipped = meta.others.length;",
        "  text($('summary'), meta.command + ' of ' + meta.input + ': ' + frames.length + ' frames, ' +",
        "    skipped + ' photos skipped. Frames shown at most ' + meta.maxSide + ' px on the long side. ' +",
        "    'Page written ' + meta.created + ' by alignimate ' + meta.alignimate + '.');",
        "  text($('reference-note'), meta.referenceNote);",
        "  text($('usage'), 'Mark frames with \"exclude\", press \"Save exclusions\" (the browser saves ' +",
        "    meta.saveName + '), then: alignimate animate ' + meta.folder + ' -o timeline.mp4 --exclude ' +",
        "    meta.saveName + '. The marks are also remembered in this browser for this folder.');",
        "  text($('frames-heading'), 'Frames (' + frames.length + ')');",
        "  text($('others-heading'), 'Skipped photos (' + skipped + ')');",
        "  $('position').max = Math.max(0, frames.length - 1);",
        "  const body = document.querySelector('#frames-table tbody');",
        "  frames.forEach((f, i) => {",
        "    const row = document.createElement('tr');",
        "    row.dataset.name = f.name;",
        "    const cells = [String(i + 1), f.name, f.status, lossText(f.loss), f.reason || ''];",
        "    cells.forEach((value, c) => {",
        "      const cell = document.createElement('td');",
        "      text(cell, value);",
        "      if (c === 1) cell.className = 'name';",
        "      if (c === 2) cell.className = 'st-' + f.status;",
        "      row.appendChild(cell);",
        "    });",
        "    const box = document.createElement('input');",
        "    box.type = 'checkbox';",
        "    box.setAttribute('aria-label', 'exclude ' + f.name);",
        "    box.addEventListener('click', e => { e.stopPropagation(); setExcluded(f.name, box.checked); });",
        "    const cell = document.createElement('td');",
        "    cell.appendChild(box);",
        "    row.appendChild(cell);",
        "    row.addEventListener('click', () => { stop(); show(i); });",
        "    body.appendChild(row);",
        "  });",
        "  const list = $('others');",
        "  if (!skipped) text(list, 'none');",
        "  meta.others.forEach(o => {",
        "    const item = document.createElement('div');",
        "    item.className = 'skipped-item';",
        "    if (o.image !== null) {",
        "      const img = document.createElement('img');",
        "      img.src = images[o.image];",
        "      img.alt = o.name;",
        "      item.appendChild(img);",
        "    } else {",
        "      const none = document.createElement('div');",
        "      none.className = 'noimage';",
        "      text(none, 'no preview');",
        "      item.appendChild(none);",
        "    }",
        "    const name = document.createElement('div');",
        "    text(name, o.name);",
        "    const reason = document.createElement('div');",
        "    reason.className = 'st-skipped';",
        "    text(reason, o.status + ': ' + (o.reason || 'no reason recorded'));",
        "    item.append(name, reason);",
        "    list.appendChild(item);",
        "  });",
        "  if (refFrame) refImg.src = images[refFrame.image];",
        "  if (!frames.length) { text($('frame-name'), 'no frames'); frameImg.classList.add('hidden'); }",
        "}",
        "",
        "$('prev').addEventListener('click', () => { stop(); step(-1); });",
        "$('next').addEventListener('click', () => { stop(); step(1); });",
        "$('play').addEventListener('click', () => { if (timer === null) play(); else stop(); });",
        "$('position').addEventListener('input', e => { stop(); show(parseInt(e.target.value, 10)); });",
        "$('speed').addEventListener('change', () => { if (timer !== null) play(); });",
        "$('mode').addEventListener('change', applyMode);",
        "$('opacity').addEventListener('input', applyMode);",
        "$('amplify').addEventListener('change', applyMode);",
        "$('exclude').addEventListener('change', e => {",
        "  if (frames.length) setExcluded(frames[index].name, e.target.checked);",
        "});",
        "$('save').addEventListener('click', save);",
        "$('load').addEventListener('change', e => { if (e.target.files.length) load(e.target.files[0]); });",
        "$('clear').addEventListener('click', () => { excluded.clear(); remember(); refreshMarks(); });",
        "document.addEventListener('keydown', e => {",
        "  // Controls keep their own keys: a slider or list its arrows, a button or checkbox its space.",
        "  const t = e.target;",
        "  if (t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) return;",
        "  if (t instanceof HTMLInputElement && t.type !== 'checkbox') return;",
        "  if (e.key === ' ' && (t instanceof HTMLButtonElement || t instanceof HTMLInputElement)) return;",
        "  if (e.key === ' ') { e.preventDefault(); if (timer === null) play(); else stop(); }",
        "  else if (e.key === 'ArrowLeft') { e.preventDefault(); stop(); step(-1); }",
        "  else if (e.key === 'ArrowRight') { e.preventDefault(); stop(); step(1); }",
        "  else if (e.key === 'x' && frames.length) {",
        "    setExcluded(frames[index].name, !excluded.has(frames[index].name));",
        "  }",
        "});",
        "",
        "build();",
        "recall();",
        "show(0);",
        "applyMode();",
        "refreshMarks();",
        "document.body.dataset.ready = 'true';",
        "})();",
        "</script>",
    ]
)
