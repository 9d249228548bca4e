"""Upload tokens: named, one user's each, scoped to namespaces or projects, expiring, stored as hashes only.

A client sends one as the public index's clients do: HTTP Basic with the user
`__token__` and the token as the password (twine, `uv publish`, `poetry
publish`). Apache hands such credentials, and no others, to the upload
application in PYPI_INDEX_TOKEN (the vhost's access partial): passwords are
checked by Apache and never reach Python.

The tokens file (the pypi_index_tokens role writes it) holds each token's
sha256 and what it may do:

    {"tokens": [{"name": "alice-ci", "user": "alice", "namespaces": ["acme"], "projects": [],
                 "expires": "2027-06-30", "sha256": "…", "issued": "…", "revoked": null}]}

A token is 256 random bits, so a single sha256 is as hard to reverse as a slow
password hash, and the check costs microseconds. A token works until the end
of its expiry day (UTC), while its user is an upload user, and only inside its
scope (which the role keeps within the user's grants, and publish.py checks
again with the grants of the day). An unknown, expired or revoked token gets
403 before the upload is read.
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import json
import sys
from pathlib import Path

from pypiserver.pkg_helpers import normalize_pkgname

from pypi_index_tools.publish import Rules

USER = "__token__"


class Tokens:
    """The tokens of one file by their sha256, read again when the file changes."""

    def __init__(self, path):
        self.path = Path(path)
        self.stamp = None
        self.by_hash = {}

    def current(self):
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self.stamp, self.by_hash = None, {}
            return self
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self.stamp:
            tokens = json.loads(self.path.read_text()).get("tokens", [])
            self.by_hash = {token["sha256"]: token for token in tokens}
            self.stamp = stamp
        return self

    def check(self, credentials, uploaders, today):
        """(token, None) for Base64 Basic credentials that hold a token in force today, else (None or the token,
        why not)."""
        try:
            user, _, secret = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, "the credentials are not valid Base64"
        if user != USER:
            return None, f"a token is sent with the user {USER}"
        token = self.by_hash.get(hashlib.sha256(secret.encode()).hexdigest())
        if token is None:
            return None, "this token is not one of this index's"
        if token.get("revoked"):
            return token, f"the token {token['name']} was revoked on {token['revoked']}"
        if token["expires"] < today:
            return token, f"the token {token['name']} expired on {token['expires']}"
        if token["user"] not in uploaders:
            return token, f"the token {token['name']} belongs to {token['user']}, who is no longer an upload user"
        return token, None


class TokenUploads:
    """WSGI middleware: a request that carries a token goes on as the token's user, or gets 403 at once."""

    def __init__(self, app, tokens_path, rules, audit):
        self.app = app
        self.tokens = Tokens(tokens_path)
        self.rules = rules
        self.audit = audit

    def __call__(self, environ, start_response):
        credentials = environ.pop("PYPI_INDEX_TOKEN", None)
        if credentials is None:
            return self.app(environ, start_response)
        today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        token, why = self.tokens.current().check(credentials, self.rules.current().uploaders, today)
        if why is None:
            environ["REMOTE_USER"] = token["user"]
            environ["pypi_index.token"] = token
            return self.app(environ, start_response)
        self.audit.record(event="upload", user=token and token["user"], token=token and token["name"],
                          client=environ.get("REMOTE_ADDR"), status=403, reason=why)
        body = f"Refused: {why}.\n".encode()
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]


def use_tokens(application, config, tokens_path):
    """Wrap the upload application in the token check, with the rules and audit trail of its publish rights."""
    return TokenUploads(application, tokens_path, config.backend.rules, config.backend.audit)


def scope_refusal(rules, user, namespaces, projects):
    """Why a token of this user with this scope may not be issued (a sentence), or None when it may: a scope is
    never wider than the user's grants."""
    if user not in rules.uploaders:
        return f"{user} is not an upload user (pypi_index_upload_users)"
    if not namespaces and not projects:
        return "a token needs a scope: at least one namespace or project"
    for namespace in map(normalize_pkgname, namespaces):
        if rules.namespace(namespace) is None:
            return (f"{namespace} is not inside a declared namespace (pypi_index_namespaces); "
                    "scope a token to projects instead")
        why = rules.refusal(user, namespace)
        if why:
            return f"the scope is wider than {user}'s grants: {why}"
    for project in projects:
        why = rules.refusal(user, project)
        if why:
            return f"the scope is wider than {user}'s grants: {why}"
    return None


def expiry_refusal(expires, today, max_days):
    """Why a token may not expire on this day (a sentence), or None: a real day, YYYY-MM-DD, from today (UTC) to
    max_days after it."""
    try:
        if len(expires) != 10:
            raise ValueError
        day = datetime.date.fromisoformat(expires)
    except ValueError:
        return f"the expiry {expires!r} is not a day written YYYY-MM-DD"
    latest = today + datetime.timedelta(days=max_days)
    if not today <= day <= latest:
        return (f"the expiry {expires} is not between today ({today.isoformat()}) and {latest.isoformat()} "
                f"(pypi_index_tokens_max_days: {max_days})")
    return None


def main(argv=None):
    """Check a token's scope against the rules file, and its expiry, before the role issues it; exit 1 saying why
    not."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--namespace", action="append", default=[])
    parser.add_argument("--project", action="append", default=[])
    parser.add_argument("--expires", required=True)
    parser.add_argument("--max-days", type=int, required=True)
    args = parser.parse_args(argv)
    today = datetime.datetime.now(datetime.timezone.utc).date()
    why = (expiry_refusal(args.expires, today, args.max_days)
           or scope_refusal(Rules(args.rules).current(), args.user, args.namespace, args.project))
    if why:
        print(why, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
