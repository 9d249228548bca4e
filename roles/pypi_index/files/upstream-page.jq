# The pass-through's page filter (docs/passthrough.md, "Cooldown"). Apache
# runs it through mod_ext_filter on a cache miss only: its output is what the
# cache stores, so a hit never runs it.
#
# Input: the upstream's PEP 691 JSON page, read raw (a page that is not JSON
# lists no file rather than failing). Arguments:
#   $form   json or html, the form to answer;
#   $rules  [the rules file written by the pypi_index role]: min_age (seconds),
#           untimed (refuse or pass), files_base, and per normalized project
#           its exceptions and its quarantined versions.
# A file is listed only when it is older than min_age (PEP 700 upload-time),
# or excepted, and not quarantined; its link becomes
# /upstream-files/<stamp>/<path>, where <stamp> is when it became eligible
# (YYYYMMDDhhmmss in the host's local time, as Apache's %{TIME}), which the
# vhost compares with the time of each download.

def normalized: ascii_downcase | gsub("[-_.]+"; "-");

# The version in a file name: a wheel's second field, or what follows an
# sdist's last hyphen (older sdists have hyphens in the name itself).
def version_of:
  if test("\\.whl$") then split("-")[1]
  else sub("\\.(tar\\.gz|tar\\.bz2|tar\\.xz|tgz|tar|zip)$"; "") | (capture("-(?<v>[^-]+)$").v // "")
  end | ascii_downcase;

def epoch_of: sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601;

def stamp: if . == 0 then "00000000000000" else strflocaltime("%Y%m%d%H%M%S") end;

def html_escape: tostring | @html;

def html_link:
  (.hashes.sha256 // null) as $sha
  | "<a href=\"\(.url | html_escape)\(if $sha then "#sha256=\($sha)" else "" end)\""
    + (if .["requires-python"] then " data-requires-python=\"\(.["requires-python"] | html_escape)\"" else "" end)
    + (if .yanked == true then " data-yanked=\"\""
       elif (.yanked | type) == "string" then " data-yanked=\"\(.yanked | html_escape)\""
       else "" end)
    + (.["core-metadata"] // .["dist-info-metadata"] // false) as $metadata
      | (if $metadata == true then " data-core-metadata=\"true\" data-dist-info-metadata=\"true\""
         elif ($metadata | type) == "object" and $metadata.sha256 then
           " data-core-metadata=\"sha256=\($metadata.sha256)\" data-dist-info-metadata=\"sha256=\($metadata.sha256)\""
         else "" end)
    + ">\(.filename | html_escape)</a><br/>";

def as_html:
  "<!DOCTYPE html>\n<html>\n<head>\n"
  + "<meta name=\"pypi:repository-version\" content=\"\(.meta["api-version"] // "1.0" | html_escape)\">\n"
  + (if .["project-status"].status then
       "<meta name=\"pypi:project-status\" content=\"\(.["project-status"].status | html_escape)\">\n"
     else "" end)
  + "<title>Links for \(.name | html_escape)</title>\n</head>\n<body>\n<h1>Links for \(.name | html_escape)</h1>\n"
  + ([.files[] | html_link] | join("\n"))
  + "\n</body>\n</html>\n";

($rules[0]) as $r
| now as $now
| (try fromjson catch null) as $page
| if ($page | type) != "object" or ($page.files | type) != "array" then
    {meta: {"api-version": "1.0"}, name: "", files: []}
  else $page end
| (.name | normalized) as $project
| ($r.exceptions[$project] // []) as $excepted
| ($r.quarantine[$project] // []) as $quarantined
| [.files[]
   | (.filename | version_of) as $version
   | (if .["upload-time"] then (.["upload-time"] | epoch_of) + $r.min_age else null end) as $eligible
   | ([$excepted[] | select(. == "*" or . == $version)] | length > 0) as $is_excepted
   | . + {_version: $version,
          _listed: ((($quarantined | index($version)) == null)
                    and (.url | type) == "string" and (.url | startswith($r.files_base))
                    and ($is_excepted or ($eligible == null and $r.untimed == "pass")
                         or ($eligible != null and $eligible <= $now))),
          _stamp: (if $is_excepted or $eligible == null then 0 else $eligible end)}] as $files
| ([$files[] | select(._listed) | ._version] | unique) as $kept
| ([$files[] | select(._listed | not) | ._version] | unique - $kept) as $hidden
| .files = [$files[] | select(._listed)
            | .url = "/upstream-files/\(._stamp | stamp)/\(.url[($r.files_base | length):])"
            | del(._version, ._listed, ._stamp)]
| if .versions then .versions |= map(select((ascii_downcase) as $v | $hidden | index($v) | not)) else . end
| .meta._cooldown = {"min-age-seconds": $r.min_age, exceptions: $excepted, quarantined: $quarantined}
| if $form == "html" then as_html else . end
