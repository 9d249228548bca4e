"""The index's own figures, for node exporter's textfile collector.

Each service keeps one file of its own in Prometheus's text format, replaced
atomically by pages.write (a scrape never reads half of one); the
pypi_metrics role points node exporter's textfile collector at their
directory. A metric's name belongs to one file, so that no two files give the
same series.
"""


def family(name, help_text, samples, kind="gauge"):
    """The lines of one metric: its HELP and TYPE, then a line per (labels, value), labels a dict or None."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{key}="{text}"' for key, text in sorted((labels or {}).items()))
        lines.append(f"{name}{{{label_text}}} {value:.3f}" if label_text else f"{name} {value:.3f}")
    return lines


def text(families):
    """A file's text: these families (each from family())."""
    return "\n".join(line for lines in families for line in lines) + "\n"
