"""Children that die with their parent: ``surgegate up``'s processes never outlive it, even on SIGKILL.

:func:`dies_with_parent` gives a ``preexec_fn`` for :class:`subprocess.Popen` that asks Linux to send
the child a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``). It runs in the child after
Popen's switch of user (``user=``, ``group=``): Linux clears the setting on a change of credentials,
so set before the switch it would be lost for the PostgreSQL that runs as another user when we are
root. A parent that died between the fork and the prctl call is caught by comparing ``getppid()``.

Linux sends the signal when the *thread* that forked the child ends, so the setting is made only
for children started by the main thread (``up`` is single-threaded; a test that starts a server
from a worker thread gets a plain child). Elsewhere than Linux there is no such call: ``None``.

Hand-written in a dozen lines: the one library that wraps prctl (python-prctl) needs a C build.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def dies_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child receive ``sig`` when this process dies, or ``None`` where
    that cannot be had (not Linux, not the main thread). Safe to pass to any number of Popen calls."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the forked child

    def preexec() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the prctl call: nobody would tell us
            os._exit(1)

    return preexec
