"""Who may publish what: namespaces and their grants (PEP 752), checked on every upload.

The operator's rules come from the inventory as a JSON file (the pypi_index
role writes it):

    {"namespaces": {"acme": ["alice", "bob"]}, "projects": {"acme-shared": ["carol"]},
     "pages": "/var/cache/pypi-index/simple", "new_names": "open",
     "upstream": {"url": "https://pypi.org/simple/", "ca": null, "timeout": 3}}

Names are PEP 503 normalized. A namespace covers its own name and every name
that starts with it and a hyphen (`acme` covers `acme-lib`); the longest that
covers a name rules it. A project grant names one project, inside a
namespace or not, and rules it alone. An upload of a name that a rule covers
by a user it does not list is refused with 409 (PEP 752), before a byte is
stored.

A name no rule covers is open to every uploader, but for its first upload
(the index has no page of it yet): with "new_names": "granted" that is
refused (409); else it is refused while the pass-through's upstream has a
project of that name, since the upload would shadow the public project for
every client of the index (409), or while the upstream cannot be asked (503,
saying so). A project grant claims a name. The file is read again when it changes, so new grants need no
reload; reads never come here.
"""

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from pypiserver.backend import BackendProxy
from pypiserver.bottle_wrapper import HTTPError, request
from pypiserver.pkg_helpers import guess_pkgname_and_version, normalize_pkgname

from pypi_index_tools.audit import Audit, Hashing


class Rules:
    """The namespaces and project grants of one rules file, read again when it changes."""

    def __init__(self, path):
        self.path = Path(path)
        self.stamp = None
        self.namespaces, self.projects = {}, {}
        self.pages, self.upstream, self.new_names = None, None, "open"

    def current(self):
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self.stamp:
            rules = json.loads(self.path.read_text())
            self.namespaces = {name: set(users) for name, users in rules.get("namespaces", {}).items()}
            self.projects = {name: set(users) for name, users in rules.get("projects", {}).items()}
            self.pages = Path(rules["pages"]) if rules.get("pages") else None
            self.upstream = rules.get("upstream")
            self.new_names = rules.get("new_names", "open")
            self.stamp = stamp
        return self

    def namespace(self, project):
        """The longest namespace that covers the (normalized) name, or None."""
        covering = [name for name in self.namespaces if project == name or project.startswith(name + "-")]
        return max(covering, key=len, default=None)

    def claimed(self, project):
        """Whether a namespace or a project grant covers the (normalized) name."""
        return project in self.projects or self.namespace(project) is not None

    def refusal(self, user, project):
        """Why this user may not publish this project (a sentence), or None when they may."""
        project = normalize_pkgname(project)
        if project in self.projects:
            if user in self.projects[project]:
                return None
            return f"{project} has a project grant, and {user or 'an anonymous uploader'} holds none for it"
        namespace = self.namespace(project)
        if namespace is None or user in self.namespaces[namespace]:
            return None
        return (f"{project} is in the namespace {namespace}, and {user or 'an anonymous uploader'} "
                "holds no grant for it")

    def first_upload_refusal(self, project):
        """(status, why) when this is the first upload of an unclaimed name and new names need a grant, or it
        would shadow the upstream's project, or that could not be checked; None when it may go on."""
        project = normalize_pkgname(project)
        if self.claimed(project):
            return None
        if self.pages is not None and (self.pages / project / "index.html").exists():
            return None
        if self.new_names == "granted":
            return 409, f"{project} is a new name, and new names need a project grant or a namespace here"
        if not self.upstream:
            return None
        context = ssl.create_default_context(cafile=self.upstream["ca"]) if self.upstream.get("ca") else None
        asked = urllib.request.Request(self.upstream["url"] + project + "/",
                                       headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        try:
            with urllib.request.urlopen(asked, timeout=self.upstream["timeout"], context=context):
                pass
        except urllib.error.HTTPError as error:
            if error.code in (404, 410):
                return None
            return 503, f"the upstream index could not say whether it has {project} (it answered {error.code})"
        except (OSError, ValueError) as error:
            return 503, f"the upstream index could not be asked whether it has {project} ({error})"
        return 409, (f"the upstream index has a project {project}, which this upload would shadow for every client; "
                     "a project grant (pypi_index_project_grants) claims a name")


class PublishRights(BackendProxy):
    """A backend that refuses, with 409, an upload its uploader holds no grant for, and records every upload
    it stores or refuses in the audit trail."""

    def __init__(self, wraps, rules_path, audit_path):
        super().__init__(wraps)
        self.rules = Rules(rules_path)
        self.audit = Audit(audit_path)

    def add_package(self, filename, fh):
        # Apache checked the password and names the user, and took the
        # client's address from the balancers' X-Forwarded-For.
        event = {"event": "upload", "file": filename, "user": request.environ.get("REMOTE_USER"),
                 "client": request.environ.get("REMOTE_ADDR")}
        hashing = Hashing(fh)
        try:
            self.check(filename, event["user"])
            super().add_package(filename, hashing)
        except HTTPError as error:
            self.audit.record(**event, status=error.status_code, reason=error.body)
            raise
        self.audit.record(**event, status=200, sha256=hashing.sha256.hexdigest())

    def check(self, filename, user):
        """Raise the refusal of this upload, if any. pypiserver refused a file name it cannot read before."""
        guessed = guess_pkgname_and_version(filename)
        if not guessed:
            return
        rules = self.rules.current()
        why = rules.refusal(user, guessed[0])
        if why:
            raise HTTPError(409, f"{filename} was not stored: {why} (ask the index's operators for one).")
        first = rules.first_upload_refusal(guessed[0])
        if first:
            raise HTTPError(first[0], f"{filename} was not stored: {first[1]}.")


def use_publish_rights(config, rules_path, audit_path):
    """Give a pypiserver configuration the grant check and the audit trail (after any other backend is set)."""
    config.backend = PublishRights(config.backend, os.fspath(rules_path), os.fspath(audit_path))
    return config
