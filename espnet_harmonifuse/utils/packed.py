"""Extract a packed model (the zip of ``bin/pack.py``) into a cache dir, safely and atomically.

The zip is extracted into a temporary dir next to the target, a marker file is written last, and
the dir is renamed into place. A reader therefore sees no dir or a complete one; when several
processes extract the same zip at once, the first rename wins and the others discard their copy.
A target without the marker (left by hand or by another tool) is replaced, under a lock.
"""

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional, Union

COMPLETE_MARKER = ".extracted"


def cache_root() -> Path:
    """``$ESPNET_HARMONIFUSE_CACHE``, else ``$XDG_CACHE_HOME/espnet_harmonifuse`` (``~/.cache/espnet_harmonifuse``)."""
    if os.environ.get("ESPNET_HARMONIFUSE_CACHE"):
        return Path(os.environ["ESPNET_HARMONIFUSE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "espnet_harmonifuse"


def cache_dir_for(zip_path: Union[str, Path], root: Optional[Path] = None) -> Path:
    """The cache dir of ``zip_path``: one per file path and modification time."""
    zip_path = Path(zip_path)
    st = zip_path.stat()
    digest = hashlib.sha1(f"{zip_path.resolve()}:{st.st_mtime_ns}:{st.st_size}".encode()).hexdigest()[:16]
    return (root or cache_root()) / f"{zip_path.stem}-{digest}"


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).is_file()


def check_members(zf: zipfile.ZipFile, zip_path: Path) -> None:
    """Refuse a member that would land outside the extraction dir (an absolute path or ``..``)."""
    for name in zf.namelist():
        posix = PurePosixPath(name.replace("\\", "/"))
        if posix.is_absolute() or ".." in posix.parts or PureWindowsPath(name).drive:
            raise ValueError(
                f"packed model '{zip_path}' has the member '{name}', an absolute path or one with '..', which "
                "would be written outside the extraction dir; it was not extracted. Use a zip written by "
                "python -m espnet_harmonifuse.bin.pack"
            )


def extract_packed(zip_path: Union[str, Path], root: Optional[Path] = None) -> Path:
    """The complete cache dir of ``zip_path``, extracted now unless it already is."""
    zip_path = Path(zip_path)
    target = cache_dir_for(zip_path, root)
    if is_complete(target):
        return target
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"packed model '{zip_path}' is not a valid zip ({e}); pack it again") from None
    with zf:
        check_members(zf, zip_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            zf.extractall(tmp)
            (tmp / COMPLETE_MARKER).write_text(f"{zip_path.resolve()}\n", encoding="utf-8")
            _move_into_place(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # left only when another process's copy won
    return target


def _renamed(tmp: Path, target: Path) -> bool:
    """Rename ``tmp`` to ``target``; True when ``target`` is complete afterwards (ours, or another's)."""
    try:
        os.rename(tmp, target)  # fails on a non-empty target: a complete one is never replaced
        return True
    except OSError:
        return is_complete(target)


@contextlib.contextmanager
def _locked(lock_file: Path):
    with open(lock_file, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _move_into_place(tmp: Path, target: Path) -> None:
    if _renamed(tmp, target):
        return
    # target is an incomplete dir (or a file): replace it, one process at a time
    with _locked(target.parent / f".{target.name}.lock"):
        if is_complete(target):
            return
        try:
            target.rmdir()  # fails unless empty; an empty dir can be renamed over by another process
        except FileNotFoundError:
            pass
        except OSError:
            if is_complete(target):
                return
            aside = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
            os.rename(target, aside)  # a non-empty dir: only a lock holder moves or replaces it
            if aside.is_dir():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                aside.unlink()
        if not _renamed(tmp, target):
            raise OSError(f"cannot move the extracted packed model '{tmp}' into place as '{target}'")
