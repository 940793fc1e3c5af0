"""Writing results safely: atomic files, and one staging mechanism every command writes its outputs through.

A command's output target (a directory, or one file) is checked before any work, locked with a standard file
lock so a second run cannot write into it at the same time, filled inside a private staging folder beside it,
and moved into place only at the end. Leftovers of killed runs (staging folders, `.tmp` files, lock files) are
removed by the next run into the same target, which holds the lock and so knows that nobody else owns them.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from arithlens.errors import OutputError

STAGE_TAG, LOCK_SUFFIX, OWNER_FILE = ".arithlens-stage-", ".arithlens-lock", "owner.json"


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename over it: readers see the old file or the new.
    The temporary name carries this process's id, so a later run can tell a dead run's leftover from a live one."""
    path = Path(path)
    refuse_special(path, "output")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes it private
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_tmp(directory: Path) -> list[Path]:
    """Delete `write_atomic` temporaries in `directory` whose writer is gone (pid dead or not recorded)."""
    removed = []
    if not directory.is_dir():
        return removed
    for f in directory.glob(".*.tmp"):
        pid = _pid_in(f.name)
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue
        if f.is_file():
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def _pid_in(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def special_kind(path: Path) -> str | None:
    """What `path` is when it is neither a regular file nor a folder (nor absent): a symlink, a device, ..."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def refuse_special(path: Path, flag: str) -> None:
    """Outputs are regular files and folders: replacing a device, FIFO, socket or symlink with a file would
    destroy what the user had there (`--out /dev/full` once turned the device into a JSON file)."""
    what = special_kind(path)
    if what is not None:
        raise OutputError(f"{flag} '{path}' is {what}: arithlens writes only regular files and folders; give "
                          "another path (print to the terminal with --json)")


def check_output_path(path: Path, kind: str, flag: str) -> None:
    """Refuse a target that cannot be written, before any work: an empty path, a device, FIFO, socket or symlink,
    a file where a directory is needed (or the reverse), a parent that is a file, a parent in a file system that
    takes no new files (/proc, /sys)."""
    refuse_special(path, flag)
    if kind == "dir" and path.exists() and not path.is_dir():
        raise OutputError(f"{flag} '{path}' is a file, not a directory")
    if kind == "file" and path.is_dir():
        raise OutputError(f"{flag} '{path}' is a directory, not a file: give a file name")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{flag} '{path}': '{ancestor}' is a file, so the folder cannot be created")
    top = ancestor.resolve().parts[1:2]
    if top in (("proc",), ("sys",)):
        raise OutputError(f"{flag} '{path}' lies in '/{top[0]}', a kernel file system that takes no new files: "
                          "choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(ancestor).f_flag & os.ST_RDONLY)
        why = "is on a read-only file system" if read_only else "is not writable"
        raise OutputError(f"{flag} '{path}': '{ancestor}' {why}: choose another path")


class OutputTarget:
    """`with OutputTarget(out, "dir", "--out") as target:` write into `target.stage`, then `target.commit()`.

    On entry: the path is checked, its parent created, the lock taken (or a one-line error naming the run that
    holds it), and leftovers of killed runs into the same target removed. `stage` is a private folder beside the
    target (for `staged=False`, the target itself: training writes its resumable checkpoints in place).
    `commit()` moves the staged files into the target; leaving without it (an error) removes the stage, so
    nothing partial is left. A "file" target's stage holds the one file under the target's name."""

    def __init__(self, path: str | os.PathLike, kind: str = "dir", flag: str = "--out", *, staged: bool = True):
        if kind not in ("dir", "file"):
            raise ValueError(f"kind must be 'dir' or 'file', not {kind!r}")
        if str(path) == "":
            raise OutputError(f"{flag} is empty: give a path")
        self.path, self.kind, self.flag, self.staged = Path(path), kind, flag, staged
        check_output_path(self.path, kind, flag)
        self._lock: Any = None
        self._stage: Path | None = None
        self._made: list[Path] = []
        self.committed = False

    @property
    def parent(self) -> Path:
        return self.path.absolute().parent

    @property
    def lock_path(self) -> Path:
        return self.parent / f".{self.path.name}{LOCK_SUFFIX}"

    @property
    def stage(self) -> Path:
        """Where to write: the staging folder (a "dir" target), the target itself when not staged."""
        if not self.staged:
            self.path.mkdir(parents=True, exist_ok=True)
            return self.path
        assert self._stage is not None, "use OutputTarget as a context manager"
        return self._stage

    @property
    def staged_file(self) -> Path:
        """The path to write a "file" target to."""
        return self.stage / self.path.name

    def final(self, staged_path: Path) -> Path:
        """Where a file written into the stage will end up."""
        if self.kind == "file":
            return self.path
        return self.path / Path(staged_path).relative_to(self.stage)

    def __enter__(self) -> OutputTarget:
        try:
            self._made = [p for p in (self.parent, *self.parent.parents) if not p.exists()]
            self.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _take_lock(self.lock_path)
            if self._lock is None:
                raise OutputError(f"{self.flag} '{self.path}' is in use by another run ({self._owner()}); "
                                  "wait for it to finish or choose another path")
            self._remove_leftovers()
            self._stage = Path(tempfile.mkdtemp(prefix=f".{self.path.name}{STAGE_TAG}{os.getpid()}-",
                                                dir=self.parent))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._stage, 0o777 & ~umask)  # mkdtemp makes it private; it may become the target itself
            owner = {"pid": os.getpid(), "command": " ".join(["arithlens", *sys.argv[1:]]),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            (self._stage / OWNER_FILE).write_text(json.dumps(owner) + "\n")
        except OSError as exc:
            self._release()
            raise OutputError(f"{self.flag} '{self.path}' cannot be written: {describe_os_error(exc)}") from None
        except BaseException:
            self._release()
            raise
        return self

    def commit(self) -> None:
        """Move what was staged into place (a rename on the same file system)."""
        assert self._stage is not None
        (self._stage / OWNER_FILE).unlink(missing_ok=True)
        if self.kind == "file":
            os.replace(self.staged_file, self.path)
        elif self.staged:
            if not self.path.exists():
                os.replace(self._stage, self.path)
                self._stage = None
            else:
                _check_merge(self._stage, self.path, self.flag)
                _merge(self._stage, self.path)
        self.committed = True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._release()
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:  # the target's disk, not some input file
            raise OutputError(f"{self.flag} '{self.path}' could not be written: {describe_os_error(exc)}; "
                              "nothing was left behind") from None

    def _release(self) -> None:
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None
        if self._lock is not None:
            self.lock_path.unlink(missing_ok=True)  # removed while still held: no other run can own this file
            self._lock.release()
            self._lock = None
        if not self.committed:
            for made in self._made:  # the parents this run created, innermost first, if they stayed empty
                try:
                    made.rmdir()
                except OSError:
                    break

    def _stages(self) -> list[Path]:
        return sorted(self.parent.glob(f".{_glob_escape(self.path.name)}{STAGE_TAG}*"))

    def _remove_leftovers(self) -> None:
        """With the lock held, every stage of this target belongs to a dead run."""
        for stage in self._stages():
            shutil.rmtree(stage, ignore_errors=True)
        remove_stale_tmp(self.parent if self.kind == "file" else self.path)

    def _owner(self) -> str:
        for stage in self._stages():
            try:
                owner = json.loads((stage / OWNER_FILE).read_text())
                return f"PID {owner['pid']}: {owner['command']}, started {owner['started']}"
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return f"it holds the lock '{self.lock_path}'"


def _take_lock(path: Path):
    """The held lock on `path`, or None when another process holds it. Retries when the file it locked was
    unlinked by the previous owner between our open and our lock (then nobody else would see our lock)."""
    import filelock

    for _ in range(20):
        lock = filelock.FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            return None
        fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
        try:
            same = fd is None or os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return lock
        lock.release()
    return None


def _check_merge(stage: Path, target: Path, flag: str) -> None:
    """Before anything moves: no staged file may land on a symlink, device, FIFO or socket in the target."""
    for entry in stage.iterdir():
        dest = target / entry.name
        refuse_special(dest, flag)
        if entry.is_dir() and dest.is_dir():
            _check_merge(entry, dest, flag)


def _merge(stage: Path, target: Path) -> None:
    for entry in sorted(stage.iterdir()):
        dest = target / entry.name
        if entry.is_dir() and dest.is_dir():
            _merge(entry, dest)
        else:
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(entry, dest)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}

# What to do about an OSError, by errno: the second half of a one-line error.
_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or choose another path",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.EACCES: "permission denied: choose a path you may write or read",
    errno.EPERM: "operation not permitted: choose another path",
    errno.ENOENT: "no such file or directory: check the path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check the path",
    errno.EISDIR: "it is a directory, not a file: give a file name",
    errno.EEXIST: "it already exists: remove it or choose another path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or close other programs",
}


def describe_os_error(exc: OSError) -> str:
    """`OSError` as 'what (ECODE) on 'file': what to do', on one line."""
    code = errno.errorcode.get(exc.errno or 0, "")
    advice = _ADVICE.get(exc.errno or -1, (exc.strerror or str(exc)).lower())
    where = f" at '{exc.filename}'" if exc.filename else ""
    return f"{advice} ({code}{where})" if code else f"{advice}{where}"


__all__ = ["OutputTarget", "check_output_path", "describe_os_error", "refuse_special", "remove_stale_tmp",
           "special_kind", "write_atomic"]
