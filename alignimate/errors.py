"""The errors a job raises for a whole run, and the exit status each one means.

Exit status of every command (stated in the README):

- 0 (:data:`EXIT_OK`): every photo was aligned.
- 1 (:data:`EXIT_SKIPPED`): some photos were skipped, each with its reason; the rest were written.
- 2 (:data:`EXIT_USAGE`): a usage error or a refused request (:class:`UsageError`), found before
  any output was written or replaced.
- 3 (:data:`EXIT_FAILURE`): the run failed (:class:`RunError`: an I/O error such as a full disk or
  a missing permission, or an internal error). What was finished is kept, and rerunning the same
  command resumes.
- 130 (:data:`EXIT_INTERRUPTED`): stopped by Ctrl-C; rerunning resumes.

One bad photo is never an error of the run: it is skipped with a reason.
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "EXIT_USAGE",
    "RunError",
    "UsageError",
]

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(ValueError):
    """The request itself is wrong or refused (bad option, missing folder, output in the way):
    exit status 2. The message names the file or flag and says what to do."""


class RunError(RuntimeError):
    """The run could not go on (cannot write the output, disk full): exit status 3. The message
    names the file and the reason; what was finished is kept for a rerun to resume."""
