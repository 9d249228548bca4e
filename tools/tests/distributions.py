"""Small package files for the tests: real wheels and sdists, built in memory."""

import io
import tarfile
import zipfile


def metadata(name, version, requires_python=None, extra=b""):
    """A METADATA / PKG-INFO text."""
    text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python:
        text += f"Requires-Python: {requires_python}\n"
    return text.encode() + extra


def wheel(name, version, requires_python=None, extra=b"", dist_info=True):
    """The bytes of a wheel whose METADATA says what is given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/__init__.py", b"")
        if dist_info:
            archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata(name, version, requires_python, extra))
            archive.writestr(f"{name}-{version}.dist-info/WHEEL", b"Wheel-Version: 1.0\n")
    return buffer.getvalue()


def wheel_metadata(name, version, requires_python=None, extra=b""):
    """The METADATA inside wheel(...) with the same arguments."""
    return metadata(name, version, requires_python, extra)


def sdist(name, version, requires_python=None):
    """The bytes of a .tar.gz sdist with a PKG-INFO at its top."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = metadata(name, version, requires_python)
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
