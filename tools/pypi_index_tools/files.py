"""What the pages say of one package file, read once from the file itself.

Each file's record holds its size and mtime (the record is read again only
when they change), its digest, its Requires-Python, and for a wheel the
sha256 of its METADATA, which the page builder also writes out for PEP 658.
A file that cannot be offered gets a `skip` reason instead: it is logged and
left off its project's page, and the other files and projects are listed as
usual.

- A wheel that is not a zip, or has no `<name>-<version>.dist-info/METADATA`,
  is skipped: pip could not install it.
- A wheel whose METADATA is larger than METADATA_MAX_BYTES is listed without
  metadata (pip then reads the wheel itself); an sdist whose PKG-INFO cannot
  be read is listed without Requires-Python.
- Other file types are what pypiserver lists (pages.scan); they are listed
  with their digest only.
"""

import email.parser
import hashlib
import tarfile
import zipfile

# A METADATA file is a few KiB; one of several MiB is not worth serving.
METADATA_MAX_BYTES = 1 << 20
# PKG-INFO sits in the top directory of an sdist; deeper ones are not looked at.
SDIST_SUFFIXES = (".tar.gz", ".tgz", ".zip")


def digest(path, algo):
    """The hex digest of a file, read in 1 MiB chunks so a large package needs little memory."""
    hashed = hashlib.new(algo)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hashed.update(chunk)
    return hashed.hexdigest()


def headers(data):
    """The header fields of a METADATA or PKG-INFO file."""
    return email.parser.BytesHeaderParser().parsebytes(data)


def requires_python(data):
    """A metadata file's Requires-Python, stripped, or None."""
    value = headers(data).get("Requires-Python")
    return str(value).strip() or None if value is not None else None


def wheel_metadata(path):
    """The bytes of a wheel's METADATA, and a reason when there is none to serve."""
    try:
        with zipfile.ZipFile(path) as wheel:
            names = [info for info in wheel.infolist()
                     if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                return None, "skip", "a wheel without one .dist-info/METADATA"
            if names[0].file_size > METADATA_MAX_BYTES:
                return None, "listed", f"METADATA larger than {METADATA_MAX_BYTES} bytes, not served"
            return wheel.read(names[0]), None, None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        return None, "skip", f"not a readable zip: {error}"


def sdist_pkg_info(path):
    """The bytes of an sdist's top-level PKG-INFO, or None."""
    try:
        if path.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.filename.count("/") == 1 and info.filename.endswith("/PKG-INFO"):
                        return archive.read(info) if info.file_size <= METADATA_MAX_BYTES else None
            return None
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                    if member.size > METADATA_MAX_BYTES:
                        return None
                    return archive.extractfile(member).read()
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None
    return None


def record(path, size, mtime, algo):
    """The facts the pages need about one file, and its METADATA bytes for a wheel (else None)."""
    facts = {"size": size, "mtime": mtime, "digest": digest(path, algo) if algo else None,
             "requires_python": None, "metadata": None, "skip": None, "note": None}
    data = None
    if path.endswith(".whl"):
        data, verdict, reason = wheel_metadata(path)
        if verdict == "skip":
            facts["skip"] = reason
            return facts, None
        facts["note"] = reason
    elif path.lower().endswith(SDIST_SUFFIXES):
        info = sdist_pkg_info(path)
        facts["requires_python"] = requires_python(info) if info else None
    if data is not None:
        facts["requires_python"] = requires_python(data)
        facts["metadata"] = hashlib.sha256(data).hexdigest()
    return facts, data
