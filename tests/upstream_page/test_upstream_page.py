"""The pass-through's page filter (roles/pypi_index/files/upstream-page.jq), run by Debian's jq as Apache runs it."""

import datetime
import json
import re
import subprocess
from pathlib import Path

import pytest

FILTER = Path(__file__).parents[2] / "roles" / "pypi_index" / "files" / "upstream-page.jq"
FILES = "https://files.example/"
DAY = 86400
NOW = datetime.datetime.now(datetime.timezone.utc)


def uploaded(days_ago):
    return (NOW - datetime.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.123456Z")


def entry(filename, days_ago=None, url=None, **extra):
    found = {"filename": filename, "url": url or f"{FILES}packages/ab/cd/{filename}",
             "hashes": {"sha256": "0" * 64}, "size": 10, **extra}
    if days_ago is not None:
        found["upload-time"] = uploaded(days_ago)
    return found


PAGE = {"meta": {"api-version": "1.1"}, "name": "Demo.Lib", "versions": ["0.9", "1.0", "2.0", "3.0"],
        "files": [entry("demo_lib-0.9.tar.gz", 60), entry("demo_lib-1.0-py3-none-any.whl", 30),
                  entry("demo-lib-1.0.tar.gz", 30), entry("demo_lib-2.0-py3-none-any.whl", 2),
                  entry("demo_lib-3.0.tar.gz")]}


def run_filter(page, form="json", min_age=7 * DAY, untimed="refuse", exceptions=None, quarantine=None,
               tmp_path=None):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"min_age": min_age, "untimed": untimed, "files_base": FILES,
                                 "exceptions": exceptions or {}, "quarantine": quarantine or {}}))
    body = page if isinstance(page, str) else json.dumps(page)
    result = subprocess.run(["/usr/bin/jq", "--raw-input", "--slurp", "--raw-output", "--compact-output",
                             "--arg", "form", form, "--slurpfile", "rules", str(rules), "--from-file", str(FILTER)],
                            input=body, capture_output=True, text=True, check=True, timeout=30)
    return result.stdout if form == "html" else json.loads(result.stdout)


def names(page):
    return [found["filename"] for found in page["files"]]


def test_lists_only_files_older_than_the_minimum_and_prunes_versions(tmp_path):
    page = run_filter(PAGE, tmp_path=tmp_path)
    assert names(page) == ["demo_lib-0.9.tar.gz", "demo_lib-1.0-py3-none-any.whl", "demo-lib-1.0.tar.gz"]
    # 3.0 has no upload-time: refused, and gone from versions like 2.0.
    assert page["versions"] == ["0.9", "1.0"]
    assert page["meta"] == {"api-version": "1.1",
                            "_cooldown": {"min-age-seconds": 7 * DAY, "exceptions": [], "quarantined": []}}


def test_keeps_upload_time_and_size_and_links_through_the_index_with_the_stamp(tmp_path):
    page = run_filter(PAGE, tmp_path=tmp_path)
    old = page["files"][1]
    eligible = datetime.datetime.strptime(old["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ") + datetime.timedelta(days=7)
    stamp = eligible.replace(tzinfo=datetime.timezone.utc).astimezone().strftime("%Y%m%d%H%M%S")
    assert old["url"] == f"/upstream-files/{stamp}/packages/ab/cd/demo_lib-1.0-py3-none-any.whl"
    assert old["size"] == 10 and old["upload-time"] == uploaded(30)


def test_zero_lists_every_timed_file(tmp_path):
    assert names(run_filter(PAGE, min_age=0, tmp_path=tmp_path))[-1] == "demo_lib-2.0-py3-none-any.whl"


@pytest.mark.parametrize("excepted, listed", [(["2.0"], "2.0"), (["*"], "3.0")])
def test_an_exception_lists_a_young_or_untimed_version_with_a_stamp_of_zero(tmp_path, excepted, listed):
    page = run_filter(PAGE, exceptions={"demo-lib": excepted}, tmp_path=tmp_path)
    young = [found for found in page["files"] if f"-{listed}" in found["filename"]]
    assert young and all(found["url"].startswith("/upstream-files/00000000000000/") for found in young)
    assert listed in page["versions"] and page["meta"]["_cooldown"]["exceptions"] == excepted


def test_a_quarantined_version_is_never_listed_however_old(tmp_path):
    page = run_filter(PAGE, quarantine={"demo-lib": ["1.0"]}, exceptions={"demo-lib": ["*"]}, tmp_path=tmp_path)
    assert not any("-1.0" in name for name in names(page)) and "1.0" not in page["versions"]


def test_untimed_pass_lists_a_file_without_upload_time(tmp_path):
    assert "demo_lib-3.0.tar.gz" in names(run_filter(PAGE, untimed="pass", tmp_path=tmp_path))


def test_a_link_off_the_files_host_or_a_page_that_is_not_json_lists_nothing(tmp_path):
    elsewhere = {**PAGE, "files": [entry("demo_lib-1.0.tar.gz", 30, url="https://elsewhere.example/x.tar.gz")]}
    assert run_filter(elsewhere, tmp_path=tmp_path)["files"] == []
    assert run_filter("<html>not json</html>", tmp_path=tmp_path)["files"] == []


def test_html_form_carries_what_pip_reads(tmp_path):
    page = {**PAGE, "files": [entry("demo_lib-1.0-py3-none-any.whl", 30, **{
        "requires-python": ">=3.8", "yanked": "bad <build>", "core-metadata": {"sha256": "1" * 64}})]}
    html = run_filter(page, form="html", tmp_path=tmp_path)
    link = re.search(r"<a [^>]*>demo_lib-1\.0-py3-none-any\.whl</a>", html).group(0)
    assert 'href="/upstream-files/' in link and f'#sha256={"0" * 64}"' in link
    assert 'data-requires-python="&gt;=3.8"' in link and 'data-yanked="bad &lt;build&gt;"' in link
    assert f'data-core-metadata="sha256={"1" * 64}"' in link
    assert '<meta name="pypi:repository-version" content="1.1">' in html
