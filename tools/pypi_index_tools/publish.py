"""Who may publish what: namespaces and their grants (PEP 752), checked on every upload.

The operator's rules come from the inventory as a JSON file (the pypi_index
role writes it):

    {"namespaces": {"acme": ["alice", "bob"]}, "projects": {"acme-shared": ["carol"]},
     "uploaders": {"file": "/etc/pypi-index/groups", "group": "pypi-index-uploaders"},
     "roots": ["/srv/pypi-index/packages"], "pages": "/var/cache/pypi-index/simple", "new_names": "open",
     "upstream": {"url": "https://pypi.org/simple/", "ca": null, "timeout": 3}}

Names are PEP 503 normalized. A namespace covers its own name and every name
that starts with it and a hyphen (`acme` covers `acme-lib`); the longest that
covers a name rules it. A project grant names one project, inside a
namespace or not, and rules it alone. An upload of a name that a rule covers
by a user it does not list is refused with 409 (PEP 752), before a byte is
stored. An upload whose file name is not a wheel's or an sdist's (names.py)
gets 400. A removal over HTTP (pypiserver's remove_pkg action) is refused to
every user (403): a removal leaves a name, and a file name, that another
upload must not take, so only the operators remove a release
(playbooks/remove-release.yml). An upload token (tokens.py) is held to its
scope too (403 outside it), and works only while its user is one of the
upload users. An archived or quarantined project (PEP 792, its
`<project>.status` in a root) takes no upload (409), nor does a file name the
operators removed (its `<file>.removed`: 409, or 400 to twine).

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
import time
import urllib.error
import urllib.request
from pathlib import Path

from pypiserver.backend import BackendProxy
from pypiserver.bottle_wrapper import HTTPError, request
from pypiserver.pkg_helpers import guess_pkgname_and_version, normalize_pkgname

from pypi_index_tools import metrics, names
from pypi_index_tools.audit import Audit, Hashing
from pypi_index_tools.pages import REMOVED, STATUS, covers, read_status, write


def in_scope(token, project):
    """Whether an upload token's scope (tokens.py) covers the project."""
    return project in token["projects"] or any(covers(namespace, project) for namespace in token["namespaces"])


class Rules:
    """The namespaces and project grants of one rules file, read again when it changes."""

    def __init__(self, path):
        self.path = Path(path)
        self.stamp = None
        self.namespaces, self.projects, self.uploaders_group = {}, {}, None
        self.pages, self.upstream, self.new_names, self.roots = None, None, "open", []

    def current(self):
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self.stamp:
            rules = json.loads(self.path.read_text())
            self.namespaces = {name: set(users) for name, users in rules.get("namespaces", {}).items()}
            self.projects = {name: set(users) for name, users in rules.get("projects", {}).items()}
            self.uploaders_group = rules.get("uploaders")
            self.pages = Path(rules["pages"]) if rules.get("pages") else None
            self.upstream = rules.get("upstream")
            self.new_names = rules.get("new_names", "open")
            self.roots = [Path(root) for root in rules.get("roots", [])]
            self.stamp = stamp
        return self

    @property
    def uploaders(self):
        """The upload users, as Apache's group file names them now: the rotation playbook rewrites that file
        alone, and a user it removes loses their tokens at once, as their password."""
        if not self.uploaders_group:
            return set()
        for line in Path(self.uploaders_group["file"]).read_text().splitlines():
            group, _, users = line.partition(":")
            if group.strip() == self.uploaders_group["group"]:
                return set(users.split())
        return set()

    def namespace(self, project):
        """The longest namespace that covers the (normalized) name, or None."""
        covering = [name for name in self.namespaces if covers(name, project)]
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

    def status_refusal(self, project):
        """Why the project's PEP 792 status refuses uploads (archived, quarantined), or None."""
        project = normalize_pkgname(project)
        for root in self.roots:
            status = read_status(root / (project + STATUS))
            if status and status["status"] in ("archived", "quarantined"):
                because = f": {status['reason']}" if status.get("reason") else ""
                return f"{project} is {status['status']} and takes no upload{because}"
        return None

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
    """A backend that refuses, with 409, an upload its uploader holds no grant for (403 outside the scope of the
    upload token used, 400 for a file name it does not take) and every removal (403), records every upload and
    removal it does or refuses in the audit trail, and, given a metrics file, when the last upload was stored."""

    def __init__(self, wraps, rules_path, audit_path, metrics_path=None):
        super().__init__(wraps)
        self.rules = Rules(rules_path)
        self.audit = Audit(audit_path)
        self.metrics_path = metrics_path

    def add_package(self, filename, fh):
        event = self.event("upload", filename)
        hashing = Hashing(fh)
        try:
            self.check_upload(filename)
            super().add_package(filename, hashing)
        except HTTPError as error:
            self.audit.record(**event, status=error.status_code, reason=error.body)
            raise
        self.audit.record(**event, status=200, sha256=hashing.sha256.hexdigest())
        if self.metrics_path is not None:
            # Apart from the page service's figures: it is what tells an
            # upload the pages do not list yet.
            write(self.metrics_path, metrics.text([metrics.family(
                "pypi_index_last_upload_timestamp_seconds", "When the index last stored an upload.",
                [(None, time.time())])]))

    def check_upload(self, filename):
        """Raise the refusal of this upload, if any: a file name the index does not take, no grant, its
        project's status, or a first upload's check."""
        not_stored = f"{filename} was not stored"
        try:
            names.distribution(filename)
        except ValueError as error:
            raise HTTPError(400, f"{not_stored}: {error}.") from error
        guessed = guess_pkgname_and_version(filename)
        self.check_grant(guessed[0], not_stored)
        rules = self.rules.current()
        closed = rules.status_refusal(guessed[0])
        if closed:
            raise HTTPError(409, f"{not_stored}: {closed}.")
        first = rules.first_upload_refusal(guessed[0])
        if first:
            raise HTTPError(first[0], f"{not_stored}: {first[1]}.")

    def exists(self, filename):
        # pypiserver asks this of an upload only, before add_package, and
        # refuses the upload itself when the file is there: the trail
        # records that refusal too, with the answer pypiserver gives (400
        # to twine, which expects it, else 409).
        found = super().exists(filename)
        if found:
            status = 400 if "twine" in request.headers.get("User-Agent", "") else 409
            removed = any((root / (filename + REMOVED)).is_file() for root in self.rules.current().roots)
            why = ("was removed by the operators, and its name is never used again" if removed
                   else "is already here")
            self.audit.record(**self.event("upload", filename), status=status,
                              reason=f"{filename} {why} (pypiserver refused it; nothing was overwritten)")
        return found

    def remove_package(self, pkg):
        # pypiserver's remove_pkg action (POST /, as `twine` never sends but
        # a script may): refused to everyone, and recorded.
        reason = (f"{pkg.relfn} was not removed: removal over HTTP is off on this index; "
                  "its operators remove a release with playbooks/remove-release.yml")
        self.audit.record(**self.event("remove", pkg.relfn), status=403, reason=reason)
        raise HTTPError(403, reason)

    @staticmethod
    def event(kind, filename):
        # Apache checked the password and names the user (or tokens.py the
        # token's), and took the client's address from the balancers'
        # X-Forwarded-For.
        token = request.environ.get("pypi_index.token")
        return {"event": kind, "file": filename, "user": request.environ.get("REMOTE_USER"),
                "client": request.environ.get("REMOTE_ADDR"), **({"token": token["name"]} if token else {})}

    def check_grant(self, project, not_done):
        """Raise 409 when the user holds no grant for the project, 403 when it is outside their token's scope."""
        why = self.rules.current().refusal(request.environ.get("REMOTE_USER"), project)
        if why:
            raise HTTPError(409, f"{not_done}: {why} (ask the index's operators for one).")
        token = request.environ.get("pypi_index.token")
        if token and not in_scope(token, normalize_pkgname(project)):
            scope = ", ".join([f"the namespace {name}" for name in token["namespaces"]] + token["projects"])
            raise HTTPError(403, f"{not_done}: the token {token['name']} is scoped to {scope}.")


def use_publish_rights(config, rules_path, audit_path, metrics_path=None):
    """Give a pypiserver configuration the grant check and the audit trail (after any other backend is set), and
    the last upload's time in metrics_path, if given."""
    config.backend = PublishRights(config.backend, os.fspath(rules_path), os.fspath(audit_path),
                                   None if metrics_path is None else Path(metrics_path))
    return config
