"""Fill a package directory with a synthetic index, and write the same index as static pages.

Runs on the benchmark host with its own python3 (standard library only).
Every file is a real, installable wheel:
  bench-pkg-NNNN  --projects projects x --versions versions, about 2 KiB each;
  bench-dep-NN    20 dependencies of bench-app, --versions versions each;
  bench-app       imports all 20 dependencies (the `pip install` measure);
  bench-big       one wheel of --big-mib MiB (the large download);
  bench-heavy-NN  20 dependencies of bench-heavy-app, one wheel of
                  --heavy-mib MiB each (the resolution measure: with PEP 658
                  metadata a resolver needs none of them).
The static tree (PEP 503, links with #sha256= as pypiserver writes them) is
what Apache serves as the ceiling. One more wheel is left outside the
package directory for the upload-freshness probe.
"""

import argparse
import base64
import hashlib
import io
import os
import zipfile
from pathlib import Path

DEPENDENCIES = 20


def record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest},{len(data)}"


def wheel_bytes(name, version, modules, requires=()):
    """A minimal wheel: the given modules plus METADATA, WHEEL and RECORD."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    files = dict(modules)
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{path},{record_hash(data)}\n" for path, data in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    buffer = io.BytesIO()
    # Stored, not deflated: random payloads would not shrink and sizes stay as asked.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue()


def payload_module(name, size):
    return {f"{name.replace('-', '_')}/__init__.py":
            b"PAYLOAD = " + repr(base64.b64encode(os.urandom(size * 3 // 4))).encode() + b"\n"}


def projects(args):
    """(project, [(file name, bytes)]) for the whole synthetic set."""
    versions = [f"1.0.{minor}" for minor in range(args.versions)]
    deps = [f"bench-dep-{number:02d}" for number in range(1, DEPENDENCIES + 1)]
    for number in range(args.projects):
        name = f"bench-pkg-{number:04d}"
        yield name, [wheel_bytes(name, version, payload_module(name, 1500)) for version in versions]
    for name in deps:
        yield name, [wheel_bytes(name, version, payload_module(name, 1500)) for version in versions]
    imports = "".join(f"import {dep.replace('-', '_')}  # noqa: F401\n" for dep in deps).encode()
    yield "bench-app", [wheel_bytes("bench-app", "1.0.0", {"bench_app/__init__.py": imports}, deps)]
    yield "bench-big", [wheel_bytes("bench-big", "1.0.0", payload_module("bench-big", args.big_mib << 20))]
    heavy = [f"bench-heavy-{number:02d}" for number in range(1, DEPENDENCIES + 1)]
    for name in heavy:
        yield name, [wheel_bytes(name, "1.0.0", payload_module(name, args.heavy_mib << 20))]
    yield "bench-heavy-app", [wheel_bytes("bench-heavy-app", "1.0.0", {"bench_heavy_app/__init__.py": b""}, heavy)]


def link(file_name, data):
    return f'<a href="../../packages/{file_name}#sha256={hashlib.sha256(data).hexdigest()}">{file_name}</a><br>\n'


def page(title, body):
    return f"<!DOCTYPE html>\n<html>\n<head><title>{title}</title></head>\n<body>\n{body}</body>\n</html>\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, required=True)
    parser.add_argument("--versions", type=int, required=True)
    parser.add_argument("--big-mib", type=int, default=10)
    parser.add_argument("--heavy-mib", type=int, default=10)
    parser.add_argument("--packages", type=Path, required=True)
    parser.add_argument("--static", type=Path, required=True)
    parser.add_argument("--probe", type=Path, required=True, help="where the freshness probe's wheel goes")
    args = parser.parse_args()

    simple = args.static / "simple"
    names = []
    for name, wheels in projects(args):
        names.append(name)
        (simple / name).mkdir(parents=True, exist_ok=True)
        for file_name, data in wheels:
            (args.packages / file_name).write_bytes(data)
        (simple / name / "index.html").write_text(
            page(f"Links for {name}", "".join(link(file_name, data) for file_name, data in wheels)))
    (simple / "index.html").write_text(
        page("Simple Index", "".join(f'<a href="{name}/">{name}</a><br>\n' for name in names)))

    file_name, data = wheel_bytes("bench-pkg-0000", "9.9.9", payload_module("bench-pkg-0000", 1500))
    args.probe.mkdir(parents=True, exist_ok=True)
    (args.probe / file_name).write_bytes(data)
    print(sum(1 for _ in args.packages.iterdir()))


if __name__ == "__main__":
    main()
