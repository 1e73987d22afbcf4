"""The dashboard's routes on the API's server: sign in, overview, one socket, its chart, sign out.

Why it is shaped this way:
- It lives on the API's aiohttp app, so it is served wherever the API is: as
  ``https://<api-name>/dashboard/`` through the data plane's TLS front (the
  way a person reaches it) and on the plain API port for the machine itself.
- Sign-in uses the API's accounts and scrypt hashes, in the edge's password
  pool, and the API's login limits (``Policy.login_allowed`` per visitor
  address and per e-mail, ``login_failed``): the dashboard is one more door
  to the same accounts, not a way around their limits.
- Every answer carries a strict CSP (``script-src 'self'``: the one script is
  a file, no inline script or style), no framing, no referrer, no caching.
- Every POST checks its CSRF token (edge.dashboard.sessions) before anything
  else; a missing or wrong one is a 403 page that changes nothing.
- Unknown and other accounts' sockets are the same 404, as in the API.
- With an identity provider (``--oidc-issuer``) the sign-in page also offers it: the
  data plane signs the browser in and hands this process a signed assertion, which
  edge.dashboard.provider verifies; the verified e-mail is the account's, or no session.
  The landing answers a page that moves on to the dashboard by itself: the sign-in
  arrives by redirects that began at the provider (another site), and a browser does
  not send a ``SameSite=Strict`` cookie on those, only on a navigation from our page.
"""

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Optional

from aiohttp import web

from .. import schema
from ..auth import DUMMY_HASH, verify_password
from ..plane import DataPlaneError
from ..policy import Policy, Refused
from . import render, views
from .render import esc
from .provider import ASSERTION, LANDING, START, NotVerified, ProviderSignIn
from .sessions import SESSION_COOKIE, SIGNIN_COOKIE, SIGNIN_LIFETIME, Session, Sessions

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@dataclass
class DashboardDeps:
    src: views.Sources
    sessions: Sessions
    policy: Policy
    operators: frozenset                     # e-mails of the accounts that see every account
    held: Callable                           # async () -> the data plane's forwards everywhere
    client_address: Callable[[web.Request], str]
    provider: Optional[ProviderSignIn] = None  # --oidc-issuer: "Sign in with <provider>"


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


def _set_cookie(resp: web.Response, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True,
                    samesite="Strict")


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={**HEADERS, "Location": location})


class Dashboard:
    def __init__(self, deps: DashboardDeps):
        self._d = deps

    # -- who is asking ------------------------------------------------------------
    def _session(self, request) -> Optional[Session]:
        return self._d.sessions.check(request.cookies.get(SESSION_COOKIE))

    def _viewer(self, request) -> Optional[views.Viewer]:
        session = self._session(request)
        user = self._d.src.state.user_by_id(session.user_id) if session else None
        if user is None:
            return None
        return views.Viewer(user, user.email.lower() in self._d.operators)

    def _header(self, request, viewer: views.Viewer) -> str:
        token = self._d.sessions.csrf(self._session(request).session_id)
        role = ' <span class="role">operator: every account</span>' if viewer.operator else ""
        return ('<span class="who">{email}{role}</span><form method="post" '
                'action="/dashboard/sign-out" class="sign-out">{csrf}'
                '<button type="submit" id="sign-out">Sign out</button></form>').format(
                    email=esc(viewer.user.email), role=role, csrf=render.hidden_csrf(token))

    async def _live(self) -> tuple:
        """(local_port -> where it is held, a note when the data plane could not say)."""
        try:
            return views.live_ports(await self._d.held(), self._d.src.membership.me.name), ""
        except DataPlaneError as exc:
            return {}, "where tunnels are connected is unknown right now: {}".format(exc)

    def _status(self, note: str) -> str:
        notes = [n for n in (note, "" if self._d.src.sampler.status == "ok"
                             else "traffic figures: " + self._d.src.sampler.status) if n]
        return "".join('<p class="note">{}</p>'.format(esc(n)) for n in notes)

    # -- pages --------------------------------------------------------------------
    async def root(self, request):
        """A browser at the API's name lands on the dashboard; an API client still gets the
        API's JSON 404 for ``/``."""
        if "text/html" not in request.headers.get("Accept", ""):
            raise web.HTTPNotFound()
        return _see_other("/dashboard/")

    async def slash(self, request):
        return _see_other("/dashboard/")

    async def sign_in_form(self, request, message: str = "", status: int = 200):
        nonce = self._d.sessions.new_nonce()
        body = ('<h1>Sign in</h1>{msg}<form method="post" action="/dashboard/sign-in" '
                'class="sign-in">{csrf}<label>E-mail <input id="email" name="email" type="email" '
                'autocomplete="username" required></label><label>Password <input id="password" '
                'name="password" type="password" autocomplete="current-password" required></label>'
                '<button type="submit" id="sign-in">Sign in</button></form>{provider}').format(
                    msg='<p class="error" id="message">{}</p>'.format(esc(message)) if message else "",
                    csrf=render.hidden_csrf(self._d.sessions.csrf(nonce)),
                    provider='<p class="or">or</p><p><a class="button" id="sign-in-provider" href="{}">'
                             'Sign in with {}</a></p>'.format(esc(START), esc(self._d.provider.label))
                    if self._d.provider else "")
        resp = _html(render.page("Sign in", body), status)
        _set_cookie(resp, SIGNIN_COOKIE, nonce, SIGNIN_LIFETIME)
        return resp

    def _refused(self, status: int, message: str) -> web.Response:
        return _html(render.page("Refused", '<h1>Refused</h1><p class="error" id="message">{}</p>'
                                 '<p><a href="/dashboard/">Back</a></p>'.format(esc(message))), status)

    async def sign_in(self, request):
        form = await request.post()
        if not self._d.sessions.csrf_ok(request.cookies.get(SIGNIN_COOKIE), form.get("csrf")):
            return self._refused(403, "this form is out of date or was not sent by this page "
                                      "(CSRF check failed): load the sign-in page again")
        email = str(form.get("email", "")).strip().lower()
        password = str(form.get("password", ""))
        if len(password) > schema.MAX_PASSWORD or len(email) > 320:
            return await self.sign_in_form(request, "that e-mail or password is too long", 400)
        try:
            self._d.policy.login_allowed(self._d.client_address(request), email)
            user = self._d.src.state.user_by_email(email) if email else None
            ok = await self._d.policy.hash(verify_password, password,
                                           user.password_hash if user else DUMMY_HASH)
        except Refused as exc:
            resp = await self.sign_in_form(request, exc.message, exc.status)
            if exc.retry_after is not None:
                resp.headers["Retry-After"] = str(int(exc.retry_after))
            return resp
        if not (user and ok):
            self._d.policy.login_failed(email)
            return await self.sign_in_form(request, "wrong e-mail or password", 401)
        log.info("dashboard: signed in: user_name=%s", user.user_name)
        resp = _see_other("/dashboard/")
        _set_cookie(resp, SESSION_COOKIE, self._d.sessions.issue(user.user_id),
                    self._d.sessions.lifetime)
        resp.del_cookie(SIGNIN_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        return resp

    async def provider_landing(self, request):
        """Where a sign-in with the provider ends (edge.dashboard.provider): the data plane's
        assertion, verified, names the account; anything else gets no session."""
        prov = self._d.provider
        if prov is None:
            return self._refused(404, "this edge has no identity provider (--oidc-issuer)")
        assertion = request.headers.get(ASSERTION, "")
        if not assertion:
            return self._refused(401, "no sign-in with {} arrived here: use the button on the sign-in "
                                      "page".format(prov.label))
        try:
            email = await prov.email(assertion)
        except DataPlaneError as exc:
            log.error("dashboard: cannot verify a sign-in with the provider: %s", exc)
            return self._refused(503, "the sign-in cannot be checked right now; try again shortly")
        except NotVerified as exc:
            log.warning("dashboard: a sign-in with the provider was refused (%s), from %s", exc,
                        self._d.client_address(request))
            return self._refused(401, "this sign-in could not be verified; sign in again")
        user = self._d.src.state.user_by_email(email)
        if user is None:
            return _html(render.page("No account", (
                '<h1>No account</h1><p class="error" id="message">{email} signed in with {label}, but '
                'this edge has no account with that e-mail address, so there is nothing to show. '
                'Sign in with an account\'s e-mail and password, or ask for an account for {email}.'
                '</p><p><a href="/dashboard/sign-in">Back to the sign-in page</a></p>').format(
                    email=esc(email), label=esc(prov.label))), 403)
        log.info("dashboard: signed in with the provider: user_name=%s", user.user_name)
        resp = _html(render.page("Signed in", '<h1>Signed in</h1><p><a id="continue" href="/dashboard/">'
                                 'Continue to the dashboard</a></p>', goto="/dashboard/"))
        _set_cookie(resp, SESSION_COOKIE, self._d.sessions.issue(user.user_id), self._d.sessions.lifetime)
        return resp

    async def sign_out(self, request):
        session = self._session(request)
        form = await request.post()
        if session is None:
            return _see_other("/dashboard/sign-in")
        if not self._d.sessions.csrf_ok(session.session_id, form.get("csrf")):
            return self._refused(403, "this form was not sent by this page (CSRF check failed)")
        self._d.sessions.revoke(session)
        resp = _see_other("/dashboard/sign-in")
        resp.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        return resp

    async def overview(self, request):
        viewer = self._viewer(request)
        if viewer is None:
            return _see_other("/dashboard/sign-in")
        live, note = await self._live()
        src = self._d.src
        sections = "".join(views.account_section(src, u, live)
                           for u in views.visible_users(src, viewer))
        extra = ("<h2>Every certificate on this node</h2>" + views.all_certificates(src)
                 if viewer.operator else "")
        title = "Every account" if viewer.operator else "Your sockets"
        body = "<h1>{}</h1>{}{}{}".format(esc(title), self._status(note), sections, extra)
        return _html(render.page(title, body, self._header(request, viewer),
                                 src.sampler.interval))

    async def socket(self, request):
        viewer = self._viewer(request)
        if viewer is None:
            return _see_other("/dashboard/sign-in")
        sock = views.socket_for(self._d.src, viewer, request.match_info["socket_id"])
        if sock is None:
            return _html(render.page("Not found", "<h1>No such socket</h1>",
                                     self._header(request, viewer)), 404)
        live, note = await self._live()
        body = self._status(note) + views.socket_detail(
            self._d.src, sock, self._d.src.state.user_by_id(sock.user_id), live)
        return _html(render.page(sock.name, body, self._header(request, viewer),
                                 self._d.src.sampler.interval))

    async def chart(self, request):
        """One socket's figure, for the page's script to swap in (the chart moves)."""
        viewer = self._viewer(request)
        sock = views.socket_for(self._d.src, viewer, request.match_info["socket_id"]) if viewer else None
        if sock is None:
            return _html("", 404)
        size = "large" if request.query.get("size") == "large" else "small"
        src = self._d.src
        return _html(render.chart(sock.socket_id, src.sampler.series(sock.socket_id), size,
                                  src.clock()))

    async def static(self, request):
        name = request.match_info["name"]
        if name not in STATIC:
            return _html("", 404)
        text = resources.files(__package__).joinpath("static", name).read_text()
        return web.Response(text=text, content_type=STATIC[name],
                            headers={**HEADERS, "Cache-Control": "max-age=300"})


def add_dashboard_routes(app: web.Application, deps: DashboardDeps) -> None:
    d = Dashboard(deps)
    app.router.add_get("/", d.root)
    app.router.add_get("/dashboard", d.slash)
    app.router.add_get("/dashboard/", d.overview)
    app.router.add_get("/dashboard/sign-in", d.sign_in_form)
    app.router.add_post("/dashboard/sign-in", d.sign_in)
    app.router.add_get(LANDING, d.provider_landing)
    app.router.add_post("/dashboard/sign-out", d.sign_out)
    app.router.add_get("/dashboard/socket/{socket_id}", d.socket)
    app.router.add_get("/dashboard/chart/{socket_id}", d.chart)
    app.router.add_get("/dashboard/static/{name}", d.static)
