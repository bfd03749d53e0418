"""The output folder: the one place alignimate writes, and the ledger of the files it owns there.

The rule (README, "What alignimate touches"): alignimate writes, replaces and deletes only inside
the output folder it was given, and only files it recorded as its own. Every file a job writes
there is first *claimed*: its name goes into the folder's ledger (``.alignimate-files.json``)
before the file is created, so a crash never leaves an unrecorded file of ours, and a file the
ledger does not name is never replaced or deleted, with or without ``--overwrite``. Names come
from the job, never from a path read back from disk: a claimed name is a plain file name
(:func:`plain_name_problem`), so nothing outside the folder can be reached through it.

Opening a folder (:meth:`OutputFolder.open`) also refuses, with :class:`~alignimate.errors.UsageError`:

- an output folder that is an input folder, or holds input photos (an ancestor of one);
- a folder that holds files but no ledger (not an alignimate output folder): the files are named;
- a folder another alignimate run is writing into (``.alignimate.lock`` with a live process ID; a
  lock left by a crashed run is taken over).

The ledger, like everything read back from disk, is untrusted: names that are not plain file names
are ignored, and an unreadable ledger makes the folder foreign.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from alignimate.errors import RunError, UsageError
from alignimate.io import write_json

__all__ = [
    "CHECKPOINT_NAME",
    "LEDGER_NAME",
    "LOCK_NAME",
    "OutputFolder",
    "check_animation_target",
    "check_not_input",
    "describe_names",
    "failure_from_os_error",
    "frame_stem",
    "is_frame_name_of",
    "plain_name_problem",
]

LEDGER_NAME = ".alignimate-files.json"
LOCK_NAME = ".alignimate.lock"
CHECKPOINT_NAME = ".alignimate-checkpoint.json"
"""The checkpoint of a run in progress: hidden, like the ledger and the lock, and alignimate's by
its fixed name (a run writes it, resumes from it, and deletes it when it finishes)."""
_LEDGER_FORMAT = "alignimate-files"
_MAX_LEDGER_BYTES = 256 << 20
_MAX_NAME_BYTES = 255
# A lock file that cannot be parsed is being written right now, unless it is older than this.
_UNREADABLE_LOCK_GRACE_S = 10.0


def plain_name_problem(name: object) -> str | None:
    """Why ``name`` is not a plain file name alignimate may create in an output folder, or None.

    A plain name has no folder part (no ``/`` or ``\\``), is not ``.``/``..``, is not hidden (does
    not start with ``.``, the prefix of alignimate's own bookkeeping files), has no control
    characters and fits in 255 bytes."""
    if not isinstance(name, str):
        return f"not a text file name ({type(name).__name__})"
    if not name:
        return "empty file name"
    if "/" in name or "\\" in name:
        return f"{name!r} is a path, not a plain file name"
    if name.startswith("."):
        return f"{name!r} is hidden or names a folder ('.' prefix)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r} contains control characters"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{name!r} is not valid Unicode"
    if size > _MAX_NAME_BYTES:
        return f"file name longer than {_MAX_NAME_BYTES} bytes"
    return None


def frame_stem(photo_name: str) -> str:
    """The stem of the frame names alignimate gives a photo: its relative name without suffix,
    folders joined by ``__``, no leading dots or control characters, at most 200 characters."""
    stem = photo_name.rsplit(".", 1)[0] if "." in photo_name.rsplit("/", 1)[-1] else photo_name
    clean = stem.replace("/", "__").replace("\\", "__").lstrip(".")
    clean = "".join(c if ord(c) >= 32 and ord(c) != 127 else "_" for c in clean)[:200]
    return clean or "photo"


def is_frame_name_of(photo_name: str, name: str) -> bool:
    """Whether ``name`` is one of the frame names alignimate gives ``photo_name`` (its
    :func:`frame_stem`, then an optional ``-N``, then a suffix)."""
    stem = frame_stem(photo_name)
    base = name.rsplit(".", 1)[0]
    if base == stem:
        return True
    head, _, counter = base.rpartition("-")
    return head == stem and counter.isdigit()


def describe_names(names: Sequence[str], limit: int = 5) -> str:
    """``a, b, c`` or ``a, b, ... and 7 more``, for messages."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} ... and {len(names) - limit} more"


def failure_from_os_error(err: OSError, doing: str) -> RunError:
    """A one-line :class:`RunError` for an I/O error, naming the file, the reason and the fix.

    Args:
        err: the error.
        doing: what failed, as a verb phrase after "cannot" (``"write"``, ``"use"``).
    """
    where = f" {err.filename}" if err.filename else ""
    reason = err.strerror or str(err)
    hint = {
        errno.ENOSPC: "; free some space and rerun the same command to resume",
        errno.EDQUOT: "; free some space and rerun the same command to resume",
        errno.EACCES: "; check the folder's permissions and rerun",
        errno.EPERM: "; check the folder's permissions and rerun",
        errno.EROFS: "; choose a writable output folder",
    }.get(err.errno or 0, "")
    return RunError(f"cannot {doing}{where}: {reason}{hint}")


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_not_input(out: Path, inputs: Iterable[Path], *, what: str = "output folder") -> None:
    """Refuse an output folder that is one of the input folders or an ancestor of one.

    Such a folder would hold, and could replace, the photos. An output folder *inside* an input
    folder is fine: jobs leave it out when they look for photos.

    Args:
        out: the output folder.
        inputs: the folders the job reads photos from.
        what: what the refusal (a :class:`UsageError`) calls ``out``.
    """
    target = out.resolve()
    for folder in inputs:
        source = folder.resolve()
        if _is_within(source, target):
            relation = "is" if source == target else "contains"
            raise UsageError(
                f"{out}: the {what} {relation} the input folder {folder}; alignimate never writes among "
                f"the photos it reads. Choose a new folder (one inside the input folder is fine)"
            )


class _Lock:
    """``.alignimate.lock``: the process ID and host of the run writing into the folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self.held = False

    def acquire(self, shown: Path) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._live_holder()
                if holder is not None:
                    raise UsageError(
                        f"{shown}: another alignimate run is writing into this folder ({holder}); wait "
                        f"for it to finish or use another folder. If no such run exists, delete "
                        f"{self.path}"
                    ) from None
                self.path.unlink(missing_ok=True)  # left by a run that died
                continue
            except OSError as err:
                raise failure_from_os_error(err, "lock the output folder") from None
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}, f)
            self.held = True
            return
        raise UsageError(f"{shown}: another alignimate run took this folder at the same moment; retry")

    def _live_holder(self) -> str | None:
        """A description of the run holding the lock, or None when the lock is stale."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            pid, host = int(data["pid"]), str(data["host"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError, OverflowError):
            try:
                age = time.time() - self.path.stat().st_mtime
            except OSError:
                return None
            return "lock file being written" if age < _UNREADABLE_LOCK_GRACE_S else None
        if host != socket.gethostname():
            return f"process {pid} on {host}"  # cannot check another machine: assume it is alive
        if not 0 < pid < 1 << 22:  # Linux process IDs are below 2**22: another value is no process
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # it exists, under another user
        return f"process {pid}"

    def release(self) -> None:
        if self.held:
            self.held = False
            # A lock that cannot be removed is stale once this process ends: the next run takes it over.
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)


class OutputFolder:
    """An output folder opened for one run: the files it owns, and the run's lock.

    Use :meth:`open` (a context manager releases the lock). Jobs :meth:`claim` each name before
    writing it, write only to :meth:`path` of a claimed name, and :meth:`remove` only claimed names.
    """

    def __init__(self, path: Path, command: str, owned: set[str], animations: set[str], lock: _Lock) -> None:
        self.path = path
        self.command = command
        self._owned = owned
        self._animations = animations
        self._lock = lock

    # -- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        command: str,
        overwrite: bool = False,
        inputs: Iterable[Path] = (),
        label: str = "output folder",
        hint: str = "choose an empty or new folder",
        resumable: bool = True,
    ) -> OutputFolder:
        """Create an output folder or reopen it for a command; raises UsageError for a refused request.

        Args:
            path: the folder.
            command: the job writing there (``register``, ``faces``, ``apply``, ...), recorded in
                the ledger.
            overwrite: delete the files the ledger names (an earlier run's frames and reports) and
                start a new ledger; files alignimate did not write are left alone and block
                nothing, except that a folder holding only foreign files (no ledger) is refused.
                Without it, a folder holding another command's files, or (``resumable=False``) any
                earlier files, is refused.
            inputs: folders the run reads photos from (see :func:`check_not_input`).
            label: what messages call the folder.
            hint: the fix a refusal suggests.
            resumable: whether the command can resume from earlier files there.
        """
        folder = Path(path)
        check_not_input(folder, inputs, what=label)
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder}: exists and is not a folder; {hint}")
        if not folder.exists():
            try:
                folder.mkdir(parents=True)
            except (FileExistsError, NotADirectoryError):
                raise UsageError(f"{folder}: cannot be created (a part of the path is a file)") from None
            except OSError as err:
                raise failure_from_os_error(err, f"create the {label}") from None
        lock = _Lock(folder)
        lock.acquire(folder)
        try:
            owned, animations, ledger_command, ledger_problem = _read_ledger(folder / LEDGER_NAME)
            foreign = _foreign_entries(folder, owned)
            if ledger_problem is not None and foreign:
                raise UsageError(
                    f"{folder}: its record of alignimate's files is unusable ({ledger_problem}), so "
                    f"alignimate treats every file there as yours and touches none of them "
                    f"({describe_names(foreign)}); {hint}"
                )
            if not owned and foreign:
                raise UsageError(
                    f"{folder}: the {label} holds files alignimate did not write "
                    f"({describe_names(foreign)}); alignimate never replaces or deletes them, with or "
                    f"without --overwrite. Move them away, or {hint}"
                )
            earlier = ledger_command if owned else None
            if earlier is not None and not overwrite and (earlier != command or not resumable):
                raise UsageError(
                    f"{folder}: the {label} holds the files of an earlier alignimate {earlier}; pass "
                    f"--overwrite to replace them (only alignimate's own files are deleted), or {hint}"
                )
            out = cls(folder, command, owned, animations, lock)
            if overwrite:
                out._remove_all_owned()
            out._write_ledger()
            return out
        except BaseException:
            lock.release()
            raise

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the folder for other runs."""
        self._lock.release()

    # -- what is ours ---------------------------------------------------------------------------------
    def owns(self, name: str) -> bool:
        """Whether ``name`` (a plain name in this folder) is recorded as written by alignimate."""
        return name in self._owned

    def owned(self) -> frozenset[str]:
        """The names recorded as alignimate's."""
        return frozenset(self._owned)

    def is_free(self, name: str) -> bool:
        """Whether ``name`` may be claimed: a plain name that is ours already or does not exist."""
        if plain_name_problem(name) is not None:
            return False
        return name in self._owned or not os.path.lexists(self.path / name)

    def claim(self, names: Iterable[str]) -> None:
        """Record ``names`` as alignimate's before any of them is written (one ledger write).

        Raises ``ValueError`` for a name that is not plain or that a foreign file already holds:
        callers choose names with :meth:`is_free`."""
        new = [n for n in dict.fromkeys(names) if n not in self._owned]
        for name in new:
            problem = plain_name_problem(name)
            if problem is not None:
                raise ValueError(f"cannot claim {name!r}: {problem}")
            if os.path.lexists(self.path / name):
                raise ValueError(f"cannot claim {name!r}: a file alignimate did not write has that name")
        if new:
            self._owned.update(new)
            self._write_ledger()

    def fresh_name(self, photo_name: str, suffix: str, taken: set[str]) -> str:
        """A fresh frame name for a photo.

        Args:
            photo_name: the photo's name (relative path).
            suffix: the frame's suffix (``.jpg``, ``.png``).
            taken: names already given in this run; the new one is added to it.

        Returns:
            :func:`frame_stem` + ``suffix`` (then with ``-1``, ``-2``, ...): plain, not in ``taken``
            and free here (:meth:`is_free`).
        """
        clean = frame_stem(photo_name)
        name, counter = f"{clean}{suffix}", 1
        while name in taken or not self.is_free(name):
            name = f"{clean}-{counter}{suffix}"
            counter += 1
        taken.add(name)
        return name

    def path_of(self, name: str) -> Path:
        """The path of a claimed name (``ValueError`` for one that is not claimed)."""
        if name not in self._owned:
            raise ValueError(f"{name!r} is not one of alignimate's files in {self.path}")
        return self.path / name

    def remove(self, names: Iterable[str]) -> None:
        """Delete claimed files (regular files and links only; a folder under that name is left)."""
        gone = [n for n in names if n in self._owned]
        for name in gone:
            _unlink_file(self.path / name)
            self._owned.discard(name)
        if gone:
            self._write_ledger()

    def _remove_all_owned(self) -> None:
        for name in sorted(self._owned):
            _unlink_file(self.path / name)
        self._owned.clear()
        self._animations.clear()

    # -- animations written elsewhere -------------------------------------------------------------
    def may_replace_animation(self, path: Path) -> bool:
        """Whether ``path`` (outside this folder) is an animation made from this folder earlier."""
        return str(path.resolve()) in self._animations

    def record_animation(self, path: Path) -> None:
        """Remember that the animation at ``path`` was written from this folder."""
        self._animations.add(str(path.resolve()))
        self._write_ledger()

    def _write_ledger(self) -> None:
        data = {
            "format": _LEDGER_FORMAT,
            "version": 1,
            "command": self.command,
            "files": sorted(self._owned),
            "animations": sorted(self._animations),
        }
        try:
            write_json(self.path / LEDGER_NAME, data)
        except OSError as err:
            raise failure_from_os_error(err, "record alignimate's files in") from None


def check_animation_target(output: Path, frames: Path | None, *, overwrite: bool) -> None:
    """Refuse (a :class:`UsageError`) to replace a file the user did not ask to replace.

    Args:
        output: the animation to write (named with ``-o``); a folder there is never replaced.
        frames: the frames folder; an existing ``output`` is replaced when its ledger records it as
            an animation alignimate made from those frames.
        overwrite: replace an existing file at ``output`` anyway.
    """
    if not os.path.lexists(output):
        return
    if output.is_dir():
        raise UsageError(f"{output}: is a folder; name an animation file such as {output / 'timeline.mp4'}")
    if overwrite:
        return
    recorded = _read_ledger(frames / LEDGER_NAME)[1] if frames is not None else set()
    if str(output.resolve()) not in recorded:
        raise UsageError(
            f"{output}: exists and alignimate did not make it from these frames; pass --overwrite to "
            f"replace it, or choose another name"
        )


def _unlink_file(path: Path) -> None:
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        raise failure_from_os_error(err, "delete") from None


def _read_ledger(path: Path) -> tuple[set[str], set[str], str | None, str | None]:
    """Owned names, recorded animation paths, the command that wrote them, and the reason the
    ledger is unusable (or None)."""
    nothing: tuple[set[str], set[str], None] = (set(), set(), None)
    if not os.path.lexists(path):
        return (*nothing, None)
    try:
        if not path.is_file() or path.stat().st_size > _MAX_LEDGER_BYTES:
            return (*nothing, "not a regular file of a sensible size")
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        return (*nothing, f"unreadable: {type(err).__name__}")
    if not isinstance(data, dict) or data.get("format") != _LEDGER_FORMAT:
        return (*nothing, "not an alignimate ledger")
    files, animations, command = data.get("files"), data.get("animations", []), data.get("command")
    if not (isinstance(files, list) and isinstance(animations, list) and isinstance(command, str)):
        return (*nothing, "malformed")
    owned = {n for n in files if plain_name_problem(n) is None}
    paths = {p for p in animations if isinstance(p, str) and os.path.isabs(p)}
    return owned, paths, command[:40], None


def _foreign_entries(folder: Path, owned: set[str]) -> list[str]:
    """Visible entries of ``folder`` that alignimate did not record (hidden ones are ignored: they are
    alignimate's bookkeeping and temporary files, or the system's)."""
    try:
        names = sorted(e.name for e in os.scandir(folder))
    except OSError as err:
        raise failure_from_os_error(err, "list the output folder") from None
    return [n for n in names if not n.startswith(".") and n not in owned]
