"""A short, readable name for a User-Agent ("Firefox on Windows"), for the session list.

Hand-written on purpose: the label is for display only and no security decision depends
on it (any client can claim to be any browser), so a full User-Agent database would be a
new dependency, and a large one to keep current, for one word on one page.

Hostile input is the norm here: the header is whatever the client sent. So the function
reads at most ``MAX_CHARS`` characters, uses no regular expressions (only ``startswith``
and ``in`` with a fixed, short list of needles: linear in the input, nothing to
backtrack), never raises, and builds its answer only from the fixed names below: no
part of the header reaches the label, which Jinja escapes anyway.
"""

from __future__ import annotations

UNKNOWN = "Unknown device"
# The session and audit columns hold 255 characters (models.base.storable_text); reading
# no further keeps the work bounded whatever a caller passes in.
MAX_CHARS = 255

# Command-line tools and libraries name themselves first ("curl/8.4.0"); compared in
# lower case, as they are not consistent about it.
TOOLS = (
    ("curl/", "curl"),
    ("wget/", "Wget"),
    ("python-requests/", "Python requests"),
    ("python-httpx/", "Python HTTPX"),
    ("python-urllib/", "Python urllib"),
    ("python/", "Python"),
    ("go-http-client/", "Go HTTP client"),
    ("okhttp/", "OkHttp"),
    ("postmanruntime/", "Postman"),
    ("httpie/", "HTTPie"),
    ("node-fetch", "node-fetch"),
    ("axios/", "axios"),
    ("libwww-perl/", "Perl LWP"),
)

# First match wins, and the order matters: Edge, Opera, Samsung Internet and Vivaldi
# also say "Chrome/"; Chrome (and every iOS browser) also says "Safari/".
BROWSERS = (
    (("Edg/", "EdgA/", "EdgiOS/", "Edge/"), "Edge"),
    (("OPR/", "OPiOS/", "Opera"), "Opera"),
    (("SamsungBrowser/",), "Samsung Internet"),
    (("Vivaldi/",), "Vivaldi"),
    (("Firefox/", "FxiOS/"), "Firefox"),
    (("Chrome/", "CriOS/", "Chromium/"), "Chrome"),
    (("MSIE ", "Trident/"), "Internet Explorer"),
)

# Also first match wins: iPhones and iPads say "like Mac OS X", Android says "Linux".
# iPadOS asks for desktop pages by default and then says "Macintosh" like a Mac: the
# header alone cannot tell the two apart, so such an iPad is shown as a Mac.
SYSTEMS = (
    (("iPhone",), "iPhone"),
    (("iPad",), "iPad"),
    (("iPod",), "iPod"),
    (("Android",), "Android"),
    (("CrOS",), "ChromeOS"),
    (("Windows",), "Windows"),
    (("Macintosh", "Mac OS X"), "macOS"),
    (("Linux",), "Linux"),
)


def _first(text: str, table: tuple[tuple[tuple[str, ...], str], ...]) -> str | None:
    for needles, name in table:
        if any(needle in text for needle in needles):
            return name
    return None


def _browser(text: str, system: str | None) -> str | None:
    name = _first(text, BROWSERS)
    # Safari says "Version/" before "Safari/"; Android's old built-in browser did too.
    if name is None and "Safari/" in text and "Version/" in text and system != "Android":
        return "Safari"
    return name


def device_label(user_agent: str | None) -> str:
    """"Browser on system", the browser or tool alone, or ``UNKNOWN``; never raises."""
    text = (user_agent or "")[:MAX_CHARS].strip()
    if not text:
        return UNKNOWN
    lowered = text.lower()
    for prefix, tool in TOOLS:
        if lowered.startswith(prefix):
            return tool
    system = _first(text, SYSTEMS)
    browser = _browser(text, system)
    if browser and system:
        return f"{browser} on {system}"
    if system:
        return f"Unknown browser on {system}"
    return browser or UNKNOWN
