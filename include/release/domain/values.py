"""What a person or a file may give the platform, defined once: names, versions, digests, users.

Every check is a full match (`re.fullmatch`); `Strict` is the base of every model that reads
user input: an unknown key is a typo (`aproval:`) that must not silently turn a gate off.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

# A DNS-1123 label: service and environment names, Kubernetes namespaces.
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
VERSION = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
VERSION_RE = re.compile(rf"^{VERSION}$")
DIGEST = r"sha256:[0-9a-f]{64}"
DIGEST_RE = re.compile(rf"^{DIGEST}$")
IMAGE_RE = re.compile(rf"^[^@\s]+@{DIGEST}$")  # repository@sha256:<64 hex>
# A user name the registry can record (deployed_by, approved_by) and an approver in the config.
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
USER_ALLOWED = "letters, digits, '.', '_', '@', '+', '-'"
MAX_REASON = 500


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
