"""Secrets in URLs: a password or key reaches the process from the environment only (written
`${VAR}` in a URL and expanded when connecting), and every URL shown, logged or stored is
redacted first."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from study.errors import SpecError

_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_SECRET_KEY = re.compile(r"(?i)(password|passwd|pwd|secret|token)$")


@dataclass(frozen=True)
class _Url:
    """scheme://userinfo@host/path?query, split the way a careless writer means it: the
    userinfo runs to the last '@', so a password may hold '@', ':', '/' or '?' (an '@' inside
    the query makes more of the URL count as userinfo: more is hidden, never less)."""

    scheme: str
    userinfo: str | None  # None: no '@'
    host: str
    path: str  # with its leading '/', or ''
    query: str | None  # None: no '?'

    @staticmethod
    def parse(url: str) -> _Url | None:
        scheme, sep, rest = url.partition("://")
        if not sep:
            return None
        userinfo, at, after = rest.rpartition("@")
        before_query, mark, query = after.partition("?")
        host, slash, path = before_query.partition("/")
        return _Url(scheme, userinfo if at else None, host, slash + path, query if mark else None)

    def __str__(self) -> str:
        userinfo = "" if self.userinfo is None else f"{self.userinfo}@"
        query = "" if self.query is None else f"?{self.query}"
        return f"{self.scheme}://{userinfo}{self.host}{self.path}{query}"

    @property
    def password(self) -> str | None:
        return self.userinfo.split(":", 1)[1] if self.userinfo and ":" in self.userinfo else None

    def secret_params(self) -> list[tuple[int, str, str]]:
        """(index among the query's parts, key, value) of each parameter that holds a secret (its
        key read percent-decoded: pass%77ord is password)."""
        found = []
        for i, part in enumerate(re.split(r"[&;]", self.query or "")):
            key, eq, value = part.partition("=")
            if eq and _SECRET_KEY.search(unquote(key)):
                found.append((i, key, value))
        return found


def redact(url: str) -> str:
    """A URL with its password replaced by *** (in user:password@host, and in any query
    parameter whose name ends in password, pwd, secret or token)."""
    parts = _Url.parse(url)
    if parts is None:
        return url
    userinfo = parts.userinfo
    if parts.password is not None:
        userinfo = f"{userinfo.split(':', 1)[0]}:***"  # type: ignore[union-attr]  # a password means userinfo
    query = parts.query
    if query is not None:
        pieces, seps = re.split(r"[&;]", query), re.findall(r"[&;]", query)
        for i, key, _ in parts.secret_params():
            pieces[i] = f"{key}=***"
        query = "".join(p + s for p, s in zip(pieces, [*seps, ""], strict=True))
    return str(_Url(parts.scheme, userinfo, parts.host, parts.path, query))


def scrub(text: str, url: str) -> str:
    """`text` with the URL's password, and any piece of it a driver may echo, replaced by ***."""
    parts = _Url.parse(url)
    if parts is None:
        return text
    secrets = [parts.password] if parts.password else []
    secrets += [value for _, _, value in parts.secret_params()]
    secrets += [unquote(sec) for sec in secrets]  # as the URL writes it, and as the server saw it
    pieces = {p for sec in secrets for p in [sec, *re.split(r"[@:/]", sec)] if len(p) >= 3}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def _is_reference(value: str) -> bool:
    return bool(value) and _VAR.sub("", value) == ""


def plain_secret(url: str) -> str | None:
    """What secret `url` holds in plain text ('password', 'password= parameter'), or None when
    every secret in it is an environment reference (${VAR})."""
    parts = _Url.parse(url)
    if parts is None:
        return None
    if parts.password is not None and not _is_reference(parts.password):
        return "password"
    for _, key, value in parts.secret_params():
        if not _is_reference(unquote(value)):
            return f"{unquote(key)}= parameter"
    return None


def expand_env(template: str, what: str) -> str:
    """`template` with its ${VARS} taken from the environment; a variable that is not set is an
    error naming it (a password left as the text '${VAR}' would only fail later, less clearly).
    In a URL, values in the user:password part and the query are percent-encoded, so a password
    may hold '@', ':', '/' or '%' (as generated ones do)."""
    missing = [a or b for a, b in _VAR.findall(template) if (a or b) not in os.environ]
    if missing:
        raise SpecError(
            f"{what} uses ${{{missing[0]}}}, which is not set here; export it (on Kubernetes, from the Secret "
            f"that holds it)"
        )

    def expand(text: str | None, encode: bool) -> str | None:
        if text is None:
            return None
        value = lambda m: os.environ[m.group(1) or m.group(2)]  # noqa: E731
        return _VAR.sub((lambda m: quote(value(m), safe="")) if encode else value, text)

    parts = _Url.parse(template)
    if parts is None:
        return expand(template, False) or ""
    return str(
        _Url(
            parts.scheme,
            expand(parts.userinfo, True),
            expand(parts.host, False) or "",
            expand(parts.path, False) or "",
            expand(parts.query, True),
        )
    )
