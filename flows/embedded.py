"""The embedded Prefect server of a `biolake run`, tied to the run's process.

Prefect starts its embedded ("ephemeral") API server as a child process on first use and stops it
at exit. A run killed by SIGKILL (the OOM killer, `kill -9`) or by a plain SIGTERM never reaches
that exit handler: the server lived on, an orphan holding ~200 MB and the Prefect database, one
more after each such kill (QA).

:func:`start` starts the server itself (Prefect's own code and instance, which every Prefect call of
the process then uses) and, as soon as its process exists, a watchdog beside it: a tiny POSIX shell
loop in its own session that, once the run's process is gone, stops the server (SIGTERM, then
SIGKILL). At a normal exit Prefect stops its server as before and the watchdog is stopped.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess

# $1 the run's pid, $2 the server's pid. The server is stopped only while it is still the process
# Prefect started (its command line names Prefect's app factory), never a process that reused its pid.
WATCHDOG = r"""
owner=$1; server=$2
while kill -0 "$owner" 2>/dev/null; do sleep 1; done
ours() { kill -0 "$server" 2>/dev/null && { [ ! -r /proc/"$server"/cmdline ] || grep -q create_app /proc/"$server"/cmdline; }; }
ours || exit 0
kill -TERM "$server" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do sleep 0.5; ours || exit 0; done
kill -KILL "$server" 2>/dev/null
"""


def start() -> int | None:
    """Start the embedded server now, watched; its pid, or None when runs go to PREFECT_API_URL
    (a server someone else runs)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    launch = getattr(server, "_run_uvicorn_command", None)
    sh = shutil.which("sh")
    if launch is not None and sh is not None and not server.running:
        def launch_watched() -> subprocess.Popen:
            # watched from its first instant: the server takes seconds to answer, a kill comes any time
            proc = launch()
            _watch(sh, proc.pid)
            return proc

        server._run_uvicorn_command = launch_watched  # this instance only; Prefect's own code otherwise
    server.start()
    return server.server_process.pid if server.server_process else None


def _watch(sh: str, server_pid: int) -> None:
    watchdog = subprocess.Popen([sh, "-c", WATCHDOG, "biolake-prefect-watchdog", str(os.getpid()), str(server_pid)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    # at a normal exit Prefect stops its server (its own exit handler), then this stops the watchdog;
    # in either order the watchdog does nothing while this process lives
    atexit.register(_stop, watchdog)


def _stop(watchdog: subprocess.Popen) -> None:
    if watchdog.poll() is None:
        watchdog.kill()
        watchdog.wait()
