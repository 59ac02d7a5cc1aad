"""Reading a user-named file without trusting it: regular files only, bounded in bytes, UTF-8 text.

Traces, profiles and the capacity cache are all files a user (or a hostile tenant handing a user
a file) names. ``Path.read_text`` on ``/dev/zero`` never returns, on a named pipe without a
writer it blocks in ``open``, and on a multi-gigabyte file it exhausts memory. Here the file is
opened without blocking, checked to be a regular file (after symlinks), and read up to a cap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class InputFileError(ValueError):
    """The file cannot be used; the message says why in one line (the caller names the file)."""


def read_bounded_text(path: str | Path, max_bytes: int) -> str:
    """The file's text, decoded as UTF-8 (a leading byte order mark is dropped).

    Refuses anything but a regular file, files over ``max_bytes``, binary content (NUL bytes)
    and invalid UTF-8, naming the line of the first bad byte.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise InputFileError(f"not a regular file ({_kind(before.st_mode)})")
        if before.st_size > max_bytes:
            raise InputFileError(f"larger than the {max_bytes} byte limit ({before.st_size} bytes)")
        descriptor = os.open(path, flags)
    except OSError as error:
        raise InputFileError(f"cannot read: {error.strerror or error}") from error
    try:
        # The file could have been swapped between stat and open: check what was opened.
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise InputFileError("not a regular file")
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(descriptor, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as error:
        raise InputFileError(f"cannot read: {error.strerror or error}") from error
    finally:
        os.close(descriptor)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise InputFileError(f"larger than the {max_bytes} byte limit")
    return decode_text(data)


def decode_text(data: bytes) -> str:
    """UTF-8 text (BOM dropped); binary or undecodable bytes are refused with their line."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputFileError(f"line {_line_of(data, nul)}: NUL byte; binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputFileError(f"line {_line_of(data, error.start)}: not UTF-8 text ({error.reason})") from None


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"
