"""Stream addresses as they may be shown: passwords and secret query values hidden (:func:`redact`),
and a short name for a source (:func:`url_name`). Every log line, file name, API answer and page
that shows a source goes through here. Standard library only.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode

SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "token", "key", "secret", "auth", "access_token", "apikey",
                 "api_key", "signature", "sig")
"""Query parameters whose values :func:`redact` hides (some cameras take ``?user=..&pwd=..``)."""

def redact(url: str) -> str:
    """``url`` with its password (``scheme://user:PASSWORD@host``) and the values of secret-looking query
    parameters (:data:`SECRET_PARAMS`) replaced by ``***``; anything else (paths, camera indices,
    URLs without a password) unchanged.

    A password holding an unencoded ``/``, ``?`` or ``#`` ends a URL's authority early for a strict
    parser; then everything between the first ``:`` and the last ``@`` is hidden, so that no part of it
    reaches a log (``rtsp://host:554/a@b`` is then shown as ``rtsp://host:***@b``: safe, if odd).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    authority_end = min(ends) if ends else len(rest)
    authority = rest[:authority_end]
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            rest = f"{user}:***@{host}{rest[authority_end:]}"
    elif ":" in authority and "@" in rest:
        user = authority.split(":", 1)[0]
        rest = f"{user}:***@{rest.rpartition('@')[2]}"
    base, qmark, query = rest.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*")
        rest = f"{base}?{query}{hash_}{fragment}"
    return f"{scheme}://{rest}"


def url_name(url: str) -> str:
    """A short name for a stream URL (for folders and camera names): the last part of its path, else
    its host; never its user or password (``rtsp://user:pw@10.0.0.5/cam1`` -> ``cam1``)."""
    rest = url.split("://", 1)[-1]
    authority, _, path = rest.partition("/")
    host = authority.rpartition("@")[2].split(":")[0]
    tail = path.split("?")[0].split("#")[0].rstrip("/")
    return Path(tail).stem or host or "stream"
