"""A directory whose filesystem can be filled up, for the state-file tests.

As root (the development machine, most CI containers) it is a 64 KiB tmpfs that a filler file
fills to ENOSPC: the real full-disk case. Elsewhere the directory is made read-only instead
(EACCES), which exercises the same "the write fails" path. When neither works (root without
mount permission) the test is skipped rather than passing without a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import pytest


def _write_or_enospc(fd: int) -> bool:
    """Write a block; False once the filesystem is full."""
    try:
        os.write(fd, b"x" * 4096)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        return False
    return True


class FullableDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        self.mounted = result.returncode == 0
        self._filler = path / ".filler"

    def fill(self) -> None:
        """Make every further write in the directory fail."""
        if self.mounted:
            fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                while _write_or_enospc(fd):
                    pass
            finally:
                os.close(fd)
        else:
            self.path.chmod(0o500)
        probe = self.path / ".probe"
        try:
            probe.write_text("x" * 8192)
        except OSError:
            return
        probe.unlink()
        self.free()
        pytest.skip("cannot fill or write-protect a directory here (root without mount permission)")

    def free(self) -> None:
        if self.mounted:
            with contextlib.suppress(FileNotFoundError):
                self._filler.unlink()
        else:
            self.path.chmod(0o755)

    def close(self) -> None:
        self.free()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
