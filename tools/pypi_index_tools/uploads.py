"""pypiserver's storage of uploads, asking the static pages whether a file already exists.

Before it stores an upload, pypiserver asks its backend whether a file of that
name is already in a package root, and refuses the upload if so. Its own
backends answer by walking every root and stat-ing every file: 3.5 s at
200,000 files on the project's 2-core machine, on every upload. The page
builder (pages.py) has already listed each project's files on that project's
page, so this backend reads that one page, and looks in each root for a file
that arrived after the last build. Reads never come here: Apache serves them.

pypiserver writes an upload under its final name, so a write that fails half
way (disk full, an I/O error) would leave a partial file that the pages list.
This backend writes a hidden temporary file beside it (pypiserver and the
page builder ignore names starting with a dot) and renames it only once all
of it is on disk; on failure the client gets 507 (no space) or 500, and the
root holds nothing new. Before the rename, the file's own metadata must name
the project its file name does (names.py), else 400 and nothing is kept.
"""

import errno
import os
import tempfile
from pathlib import Path

from pypiserver.backend import BackendProxy, SimpleFileBackend
from pypiserver.bottle_wrapper import HTTPError
from pypiserver.pkg_helpers import guess_pkgname_and_version, normalize_pkgname

from pypi_index_tools.names import metadata_refusal
from pypi_index_tools.pages import REMOVED
from pypi_index_tools.render import lists


class PagesBackend(SimpleFileBackend):
    """pypiserver's file backend, but `exists` costs one page read, whatever the index's size."""

    def __init__(self, config, pages):
        super().__init__(config)
        self.pages = Path(pages)

    def exists(self, filename):
        # A file the operators removed keeps its name: no upload may bring
        # other bytes under it (pages.REMOVED).
        if any((Path(root) / name).is_file() for root in self.roots for name in (filename, filename + REMOVED)):
            return True
        guessed = guess_pkgname_and_version(filename)
        if guessed is None:
            return False
        try:
            page = (self.pages / normalize_pkgname(guessed[0]) / "index.html").read_text()
        except FileNotFoundError:
            return False
        return lists(page, filename)

    def add_package(self, filename, stream):
        root = self.roots[0]
        with tempfile.NamedTemporaryFile(dir=root, prefix=f".{filename}.", suffix=".part", delete=False) as part:
            try:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    part.write(chunk)
                part.flush()
                os.fsync(part.fileno())
            except OSError as error:
                os.unlink(part.name)
                full = error.errno in (errno.ENOSPC, errno.EDQUOT)
                raise HTTPError(507 if full else 500,
                                f"{filename} was not stored: {os.strerror(error.errno)}") from error
        why = metadata_refusal(part.name, filename)
        if why:
            os.unlink(part.name)
            raise HTTPError(400, f"{filename} was not stored: {why}")
        # Apache (another user) serves the file; a temporary file is private.
        os.chmod(part.name, 0o644)
        os.replace(part.name, root / filename)


def use_pages(config, pages):
    """Give a pypiserver configuration this backend (before its app is built)."""
    config.backend = BackendProxy(PagesBackend(config, pages))
    return config
