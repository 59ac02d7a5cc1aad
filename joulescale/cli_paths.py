"""argparse types for output paths, checked before a run rather than after it.

A comparison takes seconds to minutes; a ``--json`` that names a directory or a ``--report`` in
a read-only place used to fail only at the end (or block, for a named pipe). These types refuse
such a path at once: an output file must be a regular file or not exist yet, an output folder a
directory or not exist yet, and the nearest existing folder must take a new file (probed by
creating and removing a temporary one, which also catches read-only mounts and /proc).
"""

from __future__ import annotations

import argparse
import os
import stat
import tempfile
from pathlib import Path


def output_file(text: str) -> Path:
    """A file to (over)write: a regular file or a new name in a writable folder."""
    path = Path(text)
    mode = _mode(path)
    if mode is not None:
        if not stat.S_ISREG(mode):
            raise argparse.ArgumentTypeError(f"{text!r} exists and is not a regular file")
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text!r} is not writable")
        return path
    _probe(path.parent, text)
    return path


def output_folder(text: str) -> Path:
    """A folder to write into: an existing directory or a new one under a writable folder."""
    path = Path(text)
    mode = _mode(path)
    if mode is not None and not stat.S_ISDIR(mode):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    _probe(path if mode is not None else path.parent, text)
    return path


def _mode(path: Path) -> int | None:
    """The mode of what ``path`` names (through symlinks); None if nothing is there yet."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise argparse.ArgumentTypeError(f"{str(path)!r} is a dangling symlink") from None
        return None
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{str(path)!r}: {error.strerror or error}") from None


def _probe(folder: Path, text: str) -> None:
    """The nearest existing ancestor of ``folder`` must be a directory that takes a new file."""
    current = folder
    while True:
        mode = _mode(current)
        if mode is not None:
            break
        if current.parent == current:
            raise argparse.ArgumentTypeError(f"{text!r}: no existing parent folder")
        current = current.parent
    if not stat.S_ISDIR(mode):
        raise argparse.ArgumentTypeError(f"{text!r}: {str(current)!r} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=current, prefix=".joulescale-probe-"):
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: cannot write in {str(current)!r}: "
                                         f"{error.strerror or error}") from None
