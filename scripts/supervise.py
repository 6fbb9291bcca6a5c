"""Run one part of `make run` (the sandbox, `airflow standalone`) so that stopping it leaves
nothing behind, however `make run` is stopped.

    python scripts/supervise.py [--grace SECONDS] -- COMMAND [ARG...]

Why a supervisor process rather than `setsid COMMAND &` and a stop function in run.sh: run.sh
can itself be killed while it is stopping (make's whole process group gets SIGKILL, a service
manager gives up), and then whatever it started in other process groups keeps running and
holds the port. This process

- leaves make's process group and session first, so no signal to make's group reaches it;
- is a child subreaper (Linux), so everything COMMAND starts stays its descendant even when a
  parent in between exits (a hung `airflow standalone` killed before its parts) or a
  descendant leaves the group or session (Airflow puts each task in a process group of its
  own; subprocess hooks start new sessions);
- stops COMMAND's whole tree when it gets SIGTERM/SIGINT/SIGHUP (what run.sh sends), when
  COMMAND exits, or when run.sh dies without a word (PR_SET_PDEATHSIG turns that into a
  SIGTERM; elsewhere its parent is checked every second): SIGTERM to every process of the
  tree, SIGKILL after `--grace` seconds to whatever is left, and it exits only when none is
  left, so a `wait` on it in run.sh means "gone".

Its exit status is COMMAND's (or 128 + the signal that ended it).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time

import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stop(Exception):
    pass


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def _on_signal(signum, _frame):
    raise Stop(signum)


def tree(session: int) -> list[psutil.Process]:
    """Every living process COMMAND started: this process's descendants, plus any left in
    COMMAND's session (where there is no subreaper to keep orphans here)."""
    me = os.getpid()
    found = {p.pid: p for p in psutil.Process(me).children(recursive=True)}
    for p in psutil.process_iter():
        try:
            if p.pid != me and p.pid not in found and os.getsid(p.pid) == session:
                found[p.pid] = p
        except (OSError, psutil.Error):
            continue
    return [p for p in found.values() if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap() -> None:
    """Collect exited children (orphans adopted as subreaper included), so none lingers as a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_tree(session: int, grace: float) -> list[str]:
    """SIGTERM the whole tree, SIGKILL what is left after `grace` seconds; return what survived."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        procs = tree(session)
        if sig == signal.SIGKILL and procs:
            print(f"supervise: still running {grace:g} s after SIGTERM, killed: "
                  f"{', '.join(_name(p) for p in procs)}", file=sys.stderr)
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        deadline = time.monotonic() + wait
        while procs and time.monotonic() < deadline:
            psutil.wait_procs(procs, timeout=0.2)  # reaps our own children as they exit
            _reap()
            procs = tree(session)  # and catches what was started meanwhile
        if not procs:
            return []
    return [_name(p) for p in tree(session)]


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()[:3]) or p.name()
    except psutil.Error:
        return str(p.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL (default: %(default)s)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND given")

    parent = os.getppid()
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        os.setsid()
    except PermissionError:  # already a group leader: it has a group of its own anyway
        pass
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    watch_parent = not _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    status = 0
    child = None
    try:
        if os.getppid() != parent:  # the parent died before PR_SET_PDEATHSIG was in place
            raise Stop(signal.SIGTERM)
        # The command gets a session of its own too: `airflow standalone` and its parts react to
        # signals sent to their group, and only this process decides when they get one.
        child = subprocess.Popen(command, start_new_session=True)
        while True:
            try:
                status = child.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if watch_parent and os.getppid() != parent:
                    raise Stop(signal.SIGTERM) from None
    except Stop as stop:
        status = 128 + stop.args[0]
    finally:
        for sig in STOP_SIGNALS:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        if child is not None:
            left = stop_tree(child.pid, args.grace)
            if left:
                print(f"supervise: could not stop: {left}", file=sys.stderr)
                status = status or 1
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
