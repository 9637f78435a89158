"""Commands that take many input files: each file succeeds or fails on its own, the failures are listed at the end
(one line each: the file, the reason and the fix) and the exit code says how it went.

Exit codes of every ``p2pvision`` command: 0 success; 1 some inputs failed (the others have their full output);
2 an error before any output (a wrong option, value, file or checkpoint; or every input failed); 130 interrupted
(Ctrl-C, SIGINT); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


def report_failures(failures: Sequence[tuple[str, str]], total: int) -> int:
    """Print one ``p2pvision: error:`` line per failed input to stderr; the exit code for ``total`` inputs."""
    for _file, reason in failures:
        print(f"p2pvision: error: {reason}", file=sys.stderr)
    if not failures:
        return EXIT_OK
    if len(failures) < total:
        print(f"p2pvision: {len(failures)} of {total} inputs failed; the others have their output", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_ERROR
