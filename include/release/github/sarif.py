"""Each scan's findings in GitHub code scanning (the repository's Security tab).

The pipeline's `scan_sarif` step has Trivy convert its JSON report to SARIF 2.1.0
(`trivy.sarif` beside `trivy.json` in the artifact store); this uploads that file as GitHub
asks: gzip-compressed, base64-encoded, for the commit and ref the pipeline built.
"""

from __future__ import annotations

import base64
import gzip
import json
import re

from release.github import outbound

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
REF_RE = re.compile(r"refs/(heads|tags|pull)/.+")


class SarifError(ValueError):
    pass


def encode(sarif_text: str) -> str:
    """gzip, then base64: GitHub's `sarif` field."""
    return base64.b64encode(gzip.compress(sarif_text.encode("utf-8"), mtime=0)).decode("ascii")


def decode(field: str) -> dict:
    return json.loads(gzip.decompress(base64.b64decode(field)))


def upload_body(sarif_text: str, commit: str, ref: str, tool_name: str = "Trivy") -> dict:
    """The body of POST /repos/{owner}/{repo}/code-scanning/sarifs; refuses what GitHub would."""
    if not COMMIT_RE.fullmatch(commit or ""):
        raise SarifError(f"commit: {str(commit)[:80]!r} is not a full commit id (40 lowercase hex characters)")
    if not REF_RE.fullmatch(ref or ""):
        raise SarifError(f"ref: {str(ref)[:80]!r} is not a full ref; allowed: refs/heads/..., refs/tags/..., refs/pull/...")
    try:
        doc = json.loads(sarif_text)
    except ValueError as exc:
        raise SarifError(f"sarif: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != "2.1.0" or not isinstance(doc.get("runs"), list):
        raise SarifError("sarif: not a SARIF 2.1.0 log (version 2.1.0 with runs)")
    return {"commit_sha": commit, "ref": ref, "sarif": encode(sarif_text), "tool_name": tool_name}


def upload(config, sarif_path, commit: str, ref: str):
    """Upload the SARIF file at `sarif_path`; GitHub's answer (`id`, `url`), or None."""
    import logging

    log = logging.getLogger(__name__)
    try:
        body = upload_body(sarif_path.read_text(encoding="utf-8"), commit, ref)
    except (OSError, SarifError) as exc:
        log.warning("GitHub code scanning: nothing uploaded for %s: %s", commit[:12], exc)
        return None
    answer = outbound.call(config, "POST", "/code-scanning/sarifs", json=body)
    if answer:
        log.info("GitHub code scanning: %s uploaded for %s (%s), analysis %s", sarif_path.name, commit[:12], ref,
                 answer.get("id"))
    return answer
