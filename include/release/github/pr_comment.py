"""PR mode: one comment per pull request, updated in place on every run.

The comment carries a hidden marker, so each run finds it again (never a new comment per push),
and one section per service (each between its own hidden markers): a run of
`service-a-pipeline` rewrites service-a's section and leaves the other services' alone. A
section says what that service's newest run of the PR found: each stage's result, the scan
gate's verdict (blocking ids, counts per severity), which environments its chart validated for,
and links to the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from release.github import outbound

MARKER = "<!-- release-platform:pr-report -->"
TITLE = "### Release platform: what this pull request's pipelines found"
MAX_PAGES = 10  # of 100 comments each: a PR with more than 1,000 comments gets a new report comment
_SECTION = re.compile(r"<!-- service:(?P<name>[a-z0-9-]+) -->\n.*?<!-- /service:(?P=name) -->", re.S)
ICON = {"success": "✅", "failed": "❌", "running": "⏳", "skipped": "⏭️", "not run": "·"}


@dataclass
class ServiceReport:
    """What one pipeline run of a PR found, for its section of the comment."""

    service: str
    commit: str
    run_id: str
    run_url: str
    stages: dict[str, str] = field(default_factory=dict)  # stage -> success / failed / running / not run
    scan: dict | None = None          # the scan gate's summary (ScanSummary.to_dict), when it judged a report
    scan_error: str | None = None     # why the gate could not judge one
    charts: list[str] | None = None   # environments the chart validated for
    chart_error: str | None = None    # what chart validation said when it failed


def _stage_line(name: str, state: str) -> str:
    return f"| {name} | {ICON.get(state, '·')} {state} |"


def scan_lines(scan: dict | None, error: str | None) -> list[str]:
    if scan is None:
        return [f"**Scan gate**: {error or 'not run'}"]
    counts = ", ".join(f"{sev} {n}" for sev, n in (scan.get("counts") or {}).items() if n) or "no findings"
    blocking = list(scan.get("blocking") or [])
    verdict = ("passed" if scan.get("passed") else f"**blocked** by {len(blocking)} vulnerability id(s) at or above "
               f"{scan.get('threshold')}")
    lines = [f"**Scan gate**: {verdict}; counts: {counts}"]
    if blocking:
        def packages(vid: str) -> str:
            names = sorted({r.get("package") for r in scan.get("findings") or [] if r.get("id") == vid and r.get("package")})
            return f" ({', '.join(names)})" if names else ""

        shown = ", ".join(f"`{b}`{packages(b)}" for b in blocking[:20])
        lines.append(f"- blocking: {shown}" + (f" and {len(blocking) - 20} more" if len(blocking) > 20 else ""))
    for label, key in (("allowed (allow list)", "allowed"), ("ignored (no fix yet)", "ignored_unfixed")):
        if scan.get(key):
            lines.append(f"- {label}: {', '.join(f'`{x}`' for x in scan[key][:20])}")
    return lines


def render_section(report: ServiceReport) -> str:
    lines = [f"<!-- service:{report.service} -->",
             f"#### {report.service} at `{report.commit[:12]}`: [run {report.run_id}]({report.run_url})", "",
             "| stage | result |", "|---|---|"]
    lines += [_stage_line(name, state) for name, state in report.stages.items()]
    lines += ["", *scan_lines(report.scan, report.scan_error), ""]
    if report.charts is not None:
        lines.append(f"**Chart validation**: renders, lints and validates for {', '.join(report.charts)}")
    else:
        lines.append(f"**Chart validation**: {report.chart_error or 'not run'}")
    lines.append(f"<!-- /service:{report.service} -->")
    return "\n".join(lines)


def merge(existing: str | None, section: str) -> str:
    """The comment's body with `section` put in (replacing that service's older one); the other
    services' sections stay, in name order."""
    sections = {m.group("name"): m.group(0) for m in _SECTION.finditer(existing or "")}
    new = _SECTION.fullmatch(section)
    if new is None:
        raise ValueError("section: not a service section (render_section makes them)")
    sections[new.group("name")] = section
    return "\n\n".join([MARKER, TITLE, *(sections[name] for name in sorted(sections))]) + "\n"


class Unlisted(Exception):
    """GitHub did not list the PR's comments: whether a report comment exists is unknown."""


def find(config, pr: int) -> dict | None:
    """The PR's report comment (the first comment carrying the marker), or None if it has none;
    Unlisted if GitHub did not answer (then a new comment could be a second one)."""
    for page in range(1, MAX_PAGES + 1):
        comments = outbound.call(config, "GET", f"/issues/{pr}/comments", params={"per_page": 100, "page": page})
        if not isinstance(comments, list):
            raise Unlisted(f"the comments of PR #{pr} (page {page}) could not be listed")
        for comment in comments:
            if MARKER in (comment.get("body") or ""):
                return comment
        if len(comments) < 100:
            return None
    return None


def update(config, pr: int, report: ServiceReport) -> dict | None:
    """Put `report` into the PR's one report comment (created on the first run); GitHub's
    answer, or None when GitHub is off or did not answer."""
    if outbound.client(config) is None:
        return None
    section = render_section(report)
    try:
        comment = find(config, pr)
    except Unlisted as exc:  # the next run updates it; never a second comment
        import logging

        logging.getLogger(__name__).warning("GitHub: PR #%s report not updated: %s", pr, exc)
        return None
    if comment is None:
        return outbound.call(config, "POST", f"/issues/{pr}/comments", json={"body": merge(None, section)})
    return outbound.call(config, "PATCH", f"/issues/comments/{comment['id']}",
                         json={"body": merge(comment.get("body"), section)})
