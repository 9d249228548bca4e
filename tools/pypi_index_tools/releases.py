"""Which files in the package roots make up a release, named as pypiserver names them.

The yank and remove playbooks ask it: `--project` is compared after PEP 503
normalization, `--version` as written in the file names (pypiserver's own
parsing), `--filename` names one file. The release playbook asks it for a
project's removal marks instead (`--removed`: pages.REMOVED). It prints the
paths as a JSON list and changes nothing.
"""

import argparse
import json
from pathlib import Path

from pypiserver.backend import listdir
from pypiserver.pkg_helpers import normalize_pkgname

from pypi_index_tools.pages import removal_marks


def release_files(roots, project, version=None, filename=None):
    """The paths of the files of a project (one version, or one file name), sorted."""
    project = normalize_pkgname(project)
    return sorted(package.fn for root in roots for package in listdir(Path(root))
                  if package.pkgname_norm == project
                  and (version is None or package.version == version)
                  and (filename is None or Path(package.fn).name == filename))


def project_removal_marks(roots, project):
    """The paths of a project's removal marks (`<file>.removed`), sorted."""
    project = normalize_pkgname(project)
    return sorted(str(path) for name, path in removal_marks(roots) if name == project)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--version")
    parser.add_argument("--filename")
    parser.add_argument("--removed", action="store_true", help="list the project's removal marks instead")
    parser.add_argument("roots", nargs="+")
    args = parser.parse_args()
    if args.removed:
        print(json.dumps(project_removal_marks(args.roots, args.project)))
        return
    if not (args.version or args.filename):
        parser.error("name a --version or a --filename")
    print(json.dumps(release_files(args.roots, args.project, args.version, args.filename)))


if __name__ == "__main__":
    main()
