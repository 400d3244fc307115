"""In a real Chromium: pages render under the CSP with no violations, injected script does not run."""

from __future__ import annotations

import pytest

from tests.support.browser import CSP_LISTENER, inject_markup

pytestmark = pytest.mark.browser


@pytest.mark.asvs("V3.4.3", "V3.1.1")
def test_home_renders_without_csp_violations_or_console_errors(live_server, page) -> None:  # type: ignore[no-untyped-def]
    live = live_server()
    pg, watch = page
    resp = pg.goto(live.url + "/")
    assert resp.status == 200
    assert pg.locator("h1").first.inner_text()
    # The stylesheet really applied (a blocked stylesheet would leave the default font).
    bg = pg.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg not in ("", "rgba(0, 0, 0, 0)")
    pg.goto(live.url + "/auth/login")
    assert watch.csp_violations == []
    assert watch.console_errors == []


@pytest.mark.asvs("V3.4.3", "V1.2.1")
def test_injected_inline_script_is_blocked_by_csp(live_server, page) -> None:  # type: ignore[no-untyped-def]
    """Markup that slipped past escaping, in the HTML the browser receives under the
    server's own headers: an inline script, an event handler and a ``javascript:`` link."""
    live = live_server()
    pg, watch = page
    watch.violations_expected = True
    pg.add_init_script(CSP_LISTENER)
    inject_markup(pg, live.url + "/", {"</body>": (
        '<img src=x onerror="window.__pwned=1">'
        "<script>window.__pwned = 2</script>"
        '<a id="injected" href="javascript:window.__pwned=3">x</a>'
    )})
    assert pg.goto(live.url + "/").status == 200
    assert pg.locator("#injected").count() == 1  # the markup did reach the page
    pg.locator("#injected").click()
    pg.wait_for_timeout(300)
    assert pg.evaluate("window.__pwned === undefined")
    assert watch.csp_violations, "the browser should report the blocked inline script"
    assert set(pg.evaluate("window.__csp")) >= {"script-src-elem", "script-src-attr"}
    assert watch.dialogs == []


@pytest.mark.asvs("V3.4.3", "V3.2.2", "V1.2.1")
def test_trusted_types_refuse_a_dom_xss_bug(live_server, page) -> None:  # type: ignore[no-untyped-def]
    """A site script that wrote attacker text into ``innerHTML`` (a DOM-XSS bug no server
    escaping sees) throws instead: the sink takes only TrustedHTML, and the policy allows
    no way to make one. A script element's text refuses a string the same way."""
    live = live_server()
    pg, watch = page
    watch.violations_expected = True
    pg.add_init_script(CSP_LISTENER)
    pg.goto(live.url + "/")
    assert watch.csp_violations == []
    error = pg.evaluate("""() => {
      const box = document.createElement('div');
      document.body.appendChild(box);
      try {
        box.innerHTML = '<img src=x onerror="window.__pwned=1">';
      } catch (e) {
        return e.constructor.name + ': ' + e.message + ' / ' + box.childElementCount;
      }
      return null;
    }""")
    assert error is not None, "innerHTML took a plain string"
    assert error.startswith("TypeError:") and "TrustedHTML" in error
    assert error.endswith(" / 0")  # nothing was parsed into the page
    others = pg.evaluate("""() => {
      const refused = [];
      const s = document.createElement('script');
      try { s.textContent = 'window.__pwned = 2'; } catch (e) { refused.push('script'); }
      try { trustedTypes.createPolicy('bypass', {createHTML: x => x}); }
      catch (e) { refused.push('policy'); }
      return refused;
    }""")
    assert others == ["script", "policy"]
    pg.wait_for_timeout(300)
    assert pg.evaluate("window.__pwned === undefined")
    assert any("TrustedHTML" in v for v in watch.csp_violations), watch.csp_violations
    seen = set(pg.evaluate("window.__csp"))
    assert {"require-trusted-types-for", "trusted-types"} <= seen, seen
    assert watch.dialogs == []


@pytest.mark.asvs("V3.3.1")
def test_session_cookie_is_accepted_by_the_browser(live_server, page) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import PASSWORD, UserFactory

    live = live_server()
    with live.app.app_context():
        user = UserFactory()
        username = user.username
    pg, _ = page
    pg.goto(live.url + "/auth/login")
    pg.fill("#username", username)
    pg.fill("#password", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_load_state()
    cookies = {c["name"]: c for c in pg.context.cookies()}
    assert "__Host-session" in cookies
    c = cookies["__Host-session"]
    assert c["httpOnly"] and c["secure"] and c["sameSite"] == "Lax"
    assert pg.locator("text=Sign out").count() == 1


def _signed_in(browser, live, user):  # type: ignore[no-untyped-def]
    """A browser context holding a session for ``user``, made as ``client_for`` makes one
    (the login view's own call after the password; the login flow has its own tests)."""
    from flask import session

    from bastion.auth.sessions import start_session

    app = live.app
    with app.test_request_context("/auth/login", base_url=live.url):
        start_session(user)
        value = app.session_interface.get_signing_serializer(app).dumps(dict(session))
    context = browser.new_context()
    context.add_cookies([{"name": app.config["SESSION_COOKIE_NAME"], "value": value,
                          "domain": "127.0.0.1", "path": "/", "secure": True,
                          "httpOnly": True, "sameSite": "Lax"}])
    return context


@pytest.mark.asvs("V3.4.3", "V3.1.1")
def test_no_page_of_any_role_violates_its_own_csp(live_server, browser) -> None:  # type: ignore[no-untyped-def]
    """Every kind of page, as each role, loads under its CSP with nothing blocked and no
    script error: stylesheets, the scripts (by nonce), an uploaded image in an article, the
    2FA QR code (inline SVG), the dashboard's charts. A template that grows an inline style
    or script, or a policy that stops allowing what pages load, fails here."""
    from sqlalchemy import select

    from bastion.content import services as content
    from bastion.extensions import db
    from bastion.models import Upload
    from tests.factories import PASSWORD, UserFactory
    from tests.support.auth import AuthActions
    from tests.uploads import corpus
    from tests.uploads.conftest import post_file

    live = live_server()
    with live.app.app_context():
        admin = UserFactory(role_name="admin", username="warden", bio="**Bold** [a](https://a.test)")
        editor = UserFactory(role_name="editor", username="scribe", display_name="Scribe")
        reader = UserFactory(username="reader")
        article = content.create_article(editor, title="T", body="text", publish=True)
        draft = content.create_article(editor, title="D", body="d", publish=False)
        comment = content.add_comment(reader, article, "first\nsecond")
        client = live.app.test_client()
        AuthActions(client).login(editor.username, PASSWORD)
        assert post_file(client, f"/articles/{article.id}/images", corpus.png()).status_code == 302
        image = db.session.scalars(select(Upload)).one().id
        body = f"# H\n\n![photo](/uploads/{image})\n\n| l | r |\n|:-|-:|\n| 1 | 2 |"
        content.update_article(editor, article, title="T", body=body, publish=True)
        a, d, c, r = article.id, draft.id, comment.id, reader.id
        users = {"admin": admin, "editor": editor, "reader": reader}
    pages = {
        None: ["/", "/articles", f"/articles/{a}", "/articles?q=text", "/u/scribe", "/u/warden",
               "/api/docs", "/auth/login", "/auth/register", "/auth/reset", "/nope"],
        "reader": ["/", f"/articles/{a}", "/u/warden", "/account", "/account/2fa",
                   "/account/avatar", "/account/tokens", "/auth/reauth", f"/comments/{c}/edit",
                   "/nope"],
        "editor": ["/articles/new", f"/articles/{a}/edit", f"/articles/{a}/images", f"/articles/{d}"],
        "admin": [f"/articles/{a}", "/admin/users", "/admin/audit", "/admin/audit?since=x",
                  "/admin/security", f"/admin/users/{r}/delete"],
    }
    problems: list[str] = []
    for role, paths in pages.items():
        context = _signed_in(browser, live, users[role]) if role else browser.new_context()
        pg = context.new_page()
        seen: list[str] = []
        pg.on("console", lambda m, seen=seen: seen.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e, seen=seen: seen.append(f"uncaught {e}"))
        try:
            for path in paths:
                seen.clear()
                resp = pg.goto(live.url + path)
                assert resp is not None
                assert pg.locator(".nav-account button").count() == (1 if role else 0), path
                # Lazy images load as they near the screen: made eager here (as scrolling
                # would), so each is fetched under the page's CSP before it is judged.
                broken = pg.evaluate("""async () => {
                    const images = [...document.images];
                    for (const i of images) if (i.loading === 'lazy') i.loading = 'eager';
                    const late = new Promise(done => setTimeout(done, 5000));
                    await Promise.race([late, Promise.all(
                        images.map(i => i.decode().catch(() => null)))]);
                    return images.filter(i => !i.complete || i.naturalWidth === 0)
                        .map(i => i.src);
                }""")
                status = f"the server responded with a status of {resp.status}"  # a 404 page
                problems += [f"{role} {path}: {m}" for m in seen
                             if not (resp.status >= 400 and status in m)]
                problems += [f"{role} {path}: image not shown {src}" for src in broken]
        finally:
            context.close()
    assert not problems, "\n".join(problems)


@pytest.mark.asvs("V3.4.1")
def test_chromium_knows_and_denies_every_feature_the_permissions_policy_names(  # type: ignore[no-untyped-def]
    live_server, page
) -> None:
    """A name Chromium does not know is dropped with a console warning and denies nothing;
    each one here must be a feature it knows, denied to the page."""
    from bastion.security.header_values import PERMISSIONS_POLICY_DENIED

    live = live_server()
    pg, _ = page
    messages: list[str] = []
    pg.on("console", lambda msg: messages.append(msg.text))
    assert pg.goto(live.url + "/").status == 200
    known, allowed = pg.evaluate(
        "names => [document.featurePolicy.features(),"
        " names.filter(name => document.featurePolicy.allowsFeature(name))]",
        list(PERMISSIONS_POLICY_DENIED),
    )
    assert set(PERMISSIONS_POLICY_DENIED) <= set(known)
    assert allowed == []
    assert not [m for m in messages if "Permissions-Policy" in m]
