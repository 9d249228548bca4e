"""The Simple API pages, in both of PEP 691's forms, and the type-map that lets Apache choose.

HTML (PEP 503, with PEP 592 yank, PEP 629 repository version, PEP 658/714
metadata and requires-python) and JSON (PEP 691 with PEP 700's versions,
size and upload-time, PEP 752's namespaces); a project's PEP 792 status,
when it has one, in both; api-version 1.5. Each page directory holds:

- index.html, the HTML form, served as text/html;
- index.v1html, a link to it served as application/vnd.pypi.simple.v1+html;
- index.json, the JSON form, and index.json.gz, the same compressed once
  for the clients that take gzip (pip, uv: Apache serves it as it is);
- index.var, the type-map: mod_negotiation picks the form from the client's
  Accept header with its q-values.

Every link is relative, so the pages work under any host name.
"""

import datetime
import html
import json
import os
import urllib.parse

# 1.5: PEP 752 (Accepted) moves the API from 1.4 to 1.5 for an index that
# serves its namespaces, as these pages do, and forbids its keys to any
# other. 1.4 added PEP 792's status, which the pages carry; what 1.2 (PEP
# 708's tracks) and 1.3 (PEP 740's provenance) added is optional for an
# index (packaging.python.org, "Simple repository API", "API Version
# History").
API_VERSION = "1.5"
HTML_TYPE = "text/html"
V1_HTML_TYPE = "application/vnd.pypi.simple.v1+html"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"

# PEP 691: HTML when the client names no preference or a tie. mod_negotiation
# multiplies the client's q by the variant's qs, so the JSON form is a hair
# below the HTML ones: pip, uv and poetry name JSON at q=1 and HTML at 0.2 or
# less, and get JSON.
TYPE_MAP = f"""URI: index.html
Content-Type: {HTML_TYPE}; qs=1

URI: index.v1html
Content-Type: {V1_HTML_TYPE}; qs=1

URI: index.json
Content-Type: {JSON_TYPE}; qs=0.999
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <meta name="pypi:repository-version" content="{version}">
{status}        <title>{title}</title>
    </head>
    <body>
        <h1>{title}</h1>
{links}    </body>
</html>
"""


def label(filename):
    """A file's link text on its project's page, which ends its link."""
    return f">{html.escape(filename)}</a>"


def lists(page, filename):
    """Whether a project page (its HTML) has a link to a file of that name."""
    return label(filename) in page


def upload_time(mtime_ns):
    """PEP 700's upload-time: when the file arrived in the root, UTC."""
    moment = datetime.datetime.fromtimestamp(mtime_ns / 1e9, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def url(file):
    """The file's link, relative to its project's page."""
    return f"../../packages/{urllib.parse.quote(file['path'])}"


def attributes(file, algo):
    """The href and data-* attributes of a file's link (values escaped)."""
    fragment = f"#{algo}={file['digest']}" if algo and file["digest"] else ""
    parts = [f'href="{html.escape(url(file) + fragment)}"']
    if file["requires_python"]:
        parts.append(f'data-requires-python="{html.escape(file["requires_python"])}"')
    if file["metadata"]:
        # Both names: pip 22.3–23.1 read only the first (PEP 658), later pips the second (PEP 714).
        parts.append(f'data-dist-info-metadata="sha256={file["metadata"]}"')
        parts.append(f'data-core-metadata="sha256={file["metadata"]}"')
    if file["yanked"] is not None:
        parts.append(f'data-yanked="{html.escape(file["yanked"])}"')
    return " ".join(parts)


def status_meta(status):
    """PEP 792's <meta> elements of a project's status ({status, reason}), none for an active project."""
    if status is None:
        return ""
    meta = f'        <meta name="pypi:project-status" content="{html.escape(status["status"])}">\n'
    if status.get("reason"):
        meta += f'        <meta name="pypi:project-status-reason" content="{html.escape(status["reason"])}">\n'
    return meta


def project_html(name, files, algo, status=None):
    """A project's HTML page; files in the order pip ranks them."""
    links = "".join(f"            <a {attributes(file, algo)}{label(os.path.basename(file['path']))}<br>\n"
                    for file in files)
    return PAGE.format(version=API_VERSION, status=status_meta(status), title=f"Links for {html.escape(name)}",
                       links=links)


def project_json(name, files, versions, algo, status=None, namespaces=None):
    """A project's PEP 691 page, with PEP 700's fields, PEP 792's project-status and PEP 752's namespaces (null,
    or every namespace that covers the project)."""
    entries = []
    for file in files:
        entry = {
            "filename": os.path.basename(file["path"]),
            "url": url(file),
            "hashes": {algo: file["digest"]} if algo and file["digest"] else {},
            "size": file["size"],
            "upload-time": upload_time(file["mtime"]),
            # pip 22.3–23.1 crash on "dist-info-metadata" in JSON (pip#12042): only the PEP 714 name.
            "core-metadata": {"sha256": file["metadata"]} if file["metadata"] else False,
            "yanked": (file["yanked"] or True) if file["yanked"] is not None else False,
        }
        if file["requires_python"]:
            entry["requires-python"] = file["requires_python"]
        entries.append(entry)
    page = {"meta": {"api-version": API_VERSION}, "name": name, "versions": versions, "files": entries,
            "namespaces": namespaces}
    if status is not None:
        page["project-status"] = {"status": status["status"], **({"reason": status["reason"]}
                                                                 if status.get("reason") else {})}
    return json.dumps(page, separators=(",", ":"))


def index_html(names):
    """The root page: one link per project."""
    links = "".join(f'            <a href="{urllib.parse.quote(name)}/">{html.escape(name)}</a><br>\n'
                    for name in sorted(names))
    return PAGE.format(version=API_VERSION, status="", title="Simple Index", links=links)


def index_json(names):
    """The root page in PEP 691's JSON."""
    return json.dumps({"meta": {"api-version": API_VERSION},
                       "projects": [{"name": name} for name in sorted(names)]}, separators=(",", ":"))
