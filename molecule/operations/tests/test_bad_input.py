"""Bad settings fail the run with a message a person understands, before the host changes."""

import pytest
from playbooks import changed_count, output, run_playbook
from pypi_client import role_default

SECRET = "a-password-that-must-never-show"
GOOD = {"pypi_index_upload_users": [{"name": "dave", "password": SECRET}]}
WATCHED = [
    "/etc/apache2/sites-available/pypi-index.conf",
    role_default("pypi_index_wsgi_path"),
    role_default("pypi_index_htpasswd_path"),
]


def user(name, password=SECRET):
    return {"name": name, "password": password}


CASES = {
    "invalid read CIDR": ({"pypi_index_read_allow_from": ["10.0.0.300/24"]},
                          ["pypi_index_read_allow_from", '"10.0.0.300/24"']),
    "invalid upload address": ({"pypi_index_upload_allow_from": ["uploads.example"]},
                               ["pypi_index_upload_allow_from", '"uploads.example"']),
    "empty password": ({"pypi_index_upload_users": [user("dave", "")]},
                       ["pypi_index_upload_users", "password of dave", "pypi_index_password_min_length"]),
    "short password": ({"pypi_index_upload_users": [user("dave", "short")]},
                       ["password of dave", "12 characters"]),
    "colon in name": ({"pypi_index_upload_users": [user("da:ve")]},
                      ["pypi_index_upload_users", '"da:ve"']),
    "space in name": ({"pypi_index_upload_users": [user("da ve")]},
                      ["pypi_index_upload_users", '"da ve"']),
    "duplicate name": ({"pypi_index_upload_users": [user("dave"), user("dave")]},
                       ["more than once", ": dave."]),
    "empty reader password": ({**GOOD, "pypi_index_read_users": [user("erin", "")]},
                              ["pypi_index_read_users", "password of erin"]),
    "short reader password": ({**GOOD, "pypi_index_read_users": [user("erin", SECRET)]},
                              ["password of erin", "32 characters", "openssl rand"]),
    "reader and uploader with two passwords": (
        {**GOOD, "pypi_index_read_users": [user("dave", "another-long-password")]},
        ["more than once", "list it only there", ": dave."]),
    "unknown hash scheme": ({"pypi_index_hash_scheme": "md5"},
                            ["pypi_index_hash_scheme", "md5"]),
    "no users while uploads on": ({"pypi_index_upload_users": []},
                                  ["pypi_index_upload_users is empty"]),
    "upstream not http": ({"pypi_index_upstream_url": "ftp://mirror.example/simple/"},
                          ["pypi_index_upstream_url", '"ftp://mirror.example/simple/"']),
    "empty reserved name": ({"pypi_index_reserved_names": [""]},
                            ["pypi_index_reserved_names", 'not valid: ""']),
    "reserved name not a name": ({"pypi_index_reserved_names": ["acme lib!"]},
                                 ["pypi_index_reserved_names", '"acme lib!"']),
    "cache size not a size": ({"pypi_index_upstream_cache_size": "lots"},
                              ["pypi_index_upstream_cache_size", '"lots"']),
    "pages inside a package root": ({"pypi_index_pages_dir": "/srv/pypi-index/packages/simple"},
                                    ["must be absolute paths outside every package root",
                                     '"/srv/pypi-index/packages/simple"']),
    "metadata inside a package root": ({"pypi_index_metadata_dir": "/srv/pypi-index/packages/meta"},
                                       ["pypi_index_metadata_dir", '"/srv/pypi-index/packages/meta"']),
    "grant for an unknown user": ({**GOOD, "pypi_index_namespaces": [{"name": "acme", "users": ["mallory"]}]},
                                  ["pypi_index_namespaces", "upload users", "unknown: mallory."]),
    "grant for an unknown group": ({**GOOD, "pypi_index_project_grants": [{"project": "acme-lib", "groups": ["ops"]}]},
                                   ["pypi_index_publish_groups does not define: ops."]),
    "namespace not a name": ({**GOOD, "pypi_index_namespaces": [{"name": "acme corp!", "users": ["dave"]}]},
                             ["pypi_index_namespaces", 'not valid: "acme corp!"']),
    "pass-through without static pages": ({"pypi_index_static_pages": False},
                                          ["pypi_index_upstream_url needs the static pages"]),
}


@pytest.fixture(scope="module")
def baseline():
    result = run_playbook("site.yml", GOOD)
    assert result.returncode == 0, output(result)


# Everything a run writes but the virtualenv: the site, the WSGI file, the
# password, group, rules and tokens files, the node files, the packages.
STATE = ("find /etc/pypi-index /etc/apache2 /opt/pypi-index /srv/pypi-index -path /opt/pypi-index/venv -prune "
         "-o -printf '%p %y %m %u:%g\\n'; "
         "find /etc/pypi-index /etc/apache2 /opt/pypi-index /srv/pypi-index -path /opt/pypi-index/venv -prune "
         "-o -type f -exec sha256sum {} +")


def checksums(host):
    """The watched files' sha256, and every path's type, mode, owner and sha256 under what a run writes."""
    state = host.run(STATE)
    assert state.rc == 0 and "/etc/pypi-index/publish.json" in state.stdout, state.stderr
    return {**{path: host.file(path).sha256sum for path in WATCHED}, "state": sorted(state.stdout.splitlines())}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_before_any_change(host, baseline, case):
    bad_vars, message_parts = CASES[case]
    before = checksums(host)

    result = run_playbook("site.yml", {**GOOD, **bad_vars}, verbose=True)

    assert result.returncode != 0
    text = " ".join(output(result).split())
    for part in message_parts:
        assert part in text, text[-2000:]
    assert SECRET not in text
    assert checksums(host) == before
    assert changed_count(result) == 0, text[-2000:]


def test_rotation_refuses_bad_users_too(host, baseline):
    before = checksums(host)
    result = run_playbook("rotate-upload-passwords.yml", {"pypi_index_upload_users": [user("da:ve")]})
    assert result.returncode != 0
    assert '"da:ve"' in output(result)
    assert checksums(host) == before
