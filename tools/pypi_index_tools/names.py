"""What an upload may be: a wheel or an sdist whose file name names one valid project and version.

pypiserver stores any file name its own parser can split into a name and a
version: an egg-style `zz-py3.1-z.status` (which the page builder would take
for a status mark), `-1.0.tar.gz` (the empty name, whose page would be
/simple/ itself), a `.zip` or `.exe`. The index takes what PyPI takes: a wheel
(PEP 427's file name) or an sdist (PEP 625: `<name>-<version>.tar.gz`), both
read by `packaging`, the library pip reads them with, and only when
pypiserver, whose reading the pages and the grants follow, reads the same
project and version from it. A wheel's METADATA, and an sdist's PKG-INFO when
it has one, must name that project too. Anything else gets 400 with the
reason, before a byte is kept.
"""

import re

from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename,
                             parse_wheel_filename)
from packaging.version import InvalidVersion, Version
from pypiserver.pkg_helpers import guess_pkgname_and_version

from pypi_index_tools import files

# PEP 508's project names, as the core metadata's Name field takes them.
NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
# A PEP 503 normalized name: the only names the pages give a page of its own.
NORMALIZED = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def is_project(name):
    """Whether a normalized name is one a project may have (not empty, not the index's own `_namespaces`)."""
    return NORMALIZED.match(name) is not None


def distribution(filename):
    """The normalized project name and the version an upload's file name gives, or ValueError saying why it is
    not one the index takes."""
    if "/" in filename or "\\" in filename or filename.startswith("."):
        raise ValueError("a file name has no path and does not start with a dot")
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        elif filename.endswith(".tar.gz"):
            stem = filename[:-len(".tar.gz")]
            if not NAME.match(stem.rpartition("-")[0]):
                raise ValueError(f"{stem.rpartition('-')[0]!r} is not a valid project name (PEP 508)")
            name, version = parse_sdist_filename(filename)
        else:
            raise ValueError("only wheels (.whl) and sdists (.tar.gz, PEP 625) are taken")
    except (InvalidWheelFilename, InvalidSdistFilename) as error:
        raise ValueError(str(error)) from error
    guessed = guess_pkgname_and_version(filename)
    try:
        agrees = guessed is not None and canonicalize_name(guessed[0]) == name and Version(guessed[1]) == version
    except InvalidVersion:
        agrees = False
    if not agrees:
        raise ValueError(f"its name reads as project {name} {version}, and pypiserver reads it otherwise "
                         f"({guessed and ' '.join(guessed)})")
    return str(name), str(version)


def metadata_refusal(path, filename):
    """Why a stored upload's own metadata disagrees with its file name (a sentence), or None."""
    expected = distribution(filename)[0]
    if filename.endswith(".whl"):
        data, verdict, reason = files.wheel_metadata(path)
        if verdict == "skip":
            return f"it is not a wheel pip could install: {reason}"
    else:
        data = files.sdist_pkg_info(path)
    if data is None:
        # A wheel's METADATA too large to serve, or an sdist without PKG-INFO:
        # the file name alone names the project.
        return None
    named = files.headers(data).get("Name")
    if named is None or canonicalize_name(str(named)) != expected:
        return f"its metadata names the project {named}, not {expected}"
    return None
