"""Secrets in URLs: a password or key reaches the process from the environment only (written
`${VAR}` in a URL and expanded when connecting), and every URL shown, logged or stored is
redacted first."""

from __future__ import annotations

import os
import re

from study.errors import SpecError

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_SECRET_PARAM = re.compile(r"(?i)((?:^|[?&;])(?:password|passwd|pwd|secret|token)=)([^&;]*)")


def redact(url: str) -> str:
    """A URL with its password replaced by *** (in user:password@host, where the password may
    itself hold '@', and in a password= query parameter)."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    tail = _SECRET_PARAM.sub(r"\1***", tail)
    return f"{head}://{netloc}{slash}{tail}"


def scrub(text: str, url: str) -> str:
    """`text` with the URL's password, and any piece of it a driver may echo, replaced by ***."""
    netloc = url.partition("://")[2].partition("/")[0]
    userinfo = netloc.rpartition("@")[0]
    secrets = [userinfo.split(":", 1)[1]] if ":" in userinfo else []
    secrets += [m.group(2) for m in _SECRET_PARAM.finditer(url.partition("://")[2].partition("/")[2])]
    pieces = {p for sec in secrets for p in [sec, *sec.split("@")] if len(p) >= 3}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def _is_reference(value: str) -> bool:
    return bool(value) and _VAR.sub("", value) == ""


def plain_secret(url: str) -> str | None:
    """What secret `url` holds in plain text ('password', 'password= parameter'), or None when
    every secret in it is an environment reference (${VAR})."""
    head, sep, rest = url.partition("://")
    if not sep:
        return None
    netloc, _, tail = rest.partition("/")
    userinfo = netloc.rpartition("@")[0]
    if ":" in userinfo and not _is_reference(userinfo.split(":", 1)[1]):
        return "password"
    for m in _SECRET_PARAM.finditer(tail):
        if not _is_reference(m.group(2)):
            return f"{m.group(1).strip('?&;=')}= parameter"
    return None


def expand_env(template: str, what: str) -> str:
    """`template` with its ${VARS} taken from the environment; a variable that is not set is an
    error naming it (a password left as the text '${VAR}' would only fail later, less clearly)."""
    missing = [a or b for a, b in _VAR.findall(template) if (a or b) not in os.environ]
    if missing:
        raise SpecError(
            f"{what} uses ${{{missing[0]}}}, which is not set here; export it (on Kubernetes, from the Secret "
            f"that holds it)"
        )
    return os.path.expandvars(template)
