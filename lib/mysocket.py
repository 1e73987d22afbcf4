"""A thin client for the Mysocket REST API (shared/mysocket-api.md).

Thin on purpose: one method per call, plain dicts in and out, so the field
names a reader sees here are the contract's (typos included). What it adds is
what every caller would otherwise repeat:

- the token: logged in lazily, renewed shortly before its `exp`, and once more
  on a 401 (the JWT payload is read, not verified: the server verifies it);
  the e-mail and password are asked of `credentials` at every login, so a
  rotated password in the mounted Secret is used without a restart;
- a few quick retries for 5xx, 429 and timeouts, after which `Unavailable`
  tells the controller to requeue that one Service with its own backoff
  instead of blocking every other Service. A Retry-After (seconds or a date)
  up to `max_retry_after` is slept here; a longer one is handed to the caller
  at once as `Unavailable.retry_after`, since asking sooner than the server
  said only spends its rate limit again. Calls that create something are
  retried only after a 429 (the server did nothing): after a timeout or a 5xx
  the socket may exist, and only the caller can look for it (by name);
- `before_send`, for the calls that change something: asked before every
  attempt goes out, retries included, so a leader whose fence closed while a
  DELETE waited for its retry (up to `max_retry_after` and the timeouts) does
  not send it (it raises instead, lib/leader.py's Fenced);
- errors a user can act on: `BadCredentials`, `NotFound`, and an `ApiError`
  that says so when the URL answers with a page instead of JSON. A 404 page is
  not the API saying "no such socket", so a delete never reports a socket gone
  because --api-url points at a website;
- a count of every call by name and status for /metrics.

The password is sent in one POST body and never logged.
"""

import base64
import email.utils
import json
import logging
import math
import time
import urllib.parse

import requests

from lib import metrics

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, call, status, message):
        super().__init__(f"{call}: {message}" + (f" (HTTP {status})" if status else ""))
        self.call = call
        self.status = status
        self.message = message


class BadCredentials(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: the edge refused because of what is there (a pool still in use, a name with other options)."""


class Unavailable(ApiError):
    """Transient: worth retrying later. `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, call, status, message, retry_after=None):
        super().__init__(call, status, message)
        self.retry_after = retry_after


def jwt_claims(token):
    """The JWT payload, unverified: the client only needs user_id and exp (a finite number, if present)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (AttributeError, IndexError, ValueError) as e:
        raise ApiError("login", None, f"the token is not a JWT ({e.__class__.__name__})") from None
    if not isinstance(claims, dict):
        raise ApiError("login", None, "the token is not a JWT (its payload is not an object)")
    exp = claims.get("exp", 0)
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        raise ApiError("login", None, "the token's exp is not a time")
    return claims


MIN_TOKEN_USE = 30.0       # seconds a token is used before the next login, whatever its exp says


class Client:
    def __init__(self, api_url, email, password, *, timeout=(5, 10), attempts=3, max_retry_after=5.0,
                 sleep=time.sleep, clock=time.time, credentials=None):
        self.api_url = api_url.rstrip("/") + "/"
        self.email = email
        self._password = password
        self.credentials = credentials      # () -> (email, password), asked at every login
        self.timeout = timeout
        self.attempts = attempts
        self.max_retry_after = max_retry_after
        self.sleep = sleep
        self.clock = clock
        self.http = requests.Session()
        self.http.headers.update({"accept": "application/json", "User-Agent": "mysocketd"})
        self._token = None
        self._renew_at = 0.0
        self.user_id = None

    # -- the calls -----------------------------------------------------------

    def login(self):
        if self.credentials is not None:
            self.email, self._password = self.credentials()
        body = self._request("login", "POST", "login", {"email": self.email, "password": self._password},
                             auth=False)
        token = body.get("token") if isinstance(body, dict) else None
        if not token:
            raise ApiError("login", 200, "the login answer has no token")
        claims = jwt_claims(token)
        self.user_id = claims.get("user_id")
        now = self.clock()
        lifetime = max(0.0, float(claims.get("exp", now + 3600)) - now)
        self._token = token
        # At least MIN_TOKEN_USE between logins: with the server's clock behind ours, exp looks past
        # and every call would log in first (the edge rate-limits logins); a token that really
        # expired is answered 401, which logs in again anyway.
        self._renew_at = now + max(MIN_TOKEN_USE, lifetime - min(60.0, lifetime * 0.2))
        return self.user_id

    def user(self):
        self._ensure_token()
        return self._request("get_user", "GET", f"user/{self.user_id}")

    def sockets(self):
        return self._request("list_sockets", "GET", "connect")

    def connect(self, fields, before_send=None):
        """A new socket that already has one tunnel: one call instead of two."""
        return self._request("connect", "POST", "connect", fields, retry=False, before_send=before_send)

    def socket(self, socket_id):
        return self._request("get_socket", "GET", f"socket/{socket_id}")

    def create_socket(self, fields, before_send=None):
        """A new socket without tunnels (each replica adds its own); `unique_name` in fields: the
        account's socket of that name if there is one (an edge addition, edge/README.md)."""
        return self._request("create_socket", "POST", "socket", fields, retry=False, before_send=before_send)

    def update_socket(self, socket_id, fields, before_send=None):
        """Change a socket's basic auth in place (an edge addition, edge/README.md)."""
        return self._request("update_socket", "PATCH", f"socket/{socket_id}", fields, before_send=before_send)

    def delete_socket(self, socket_id, unless_used_by_others=None, before_send=None):
        """Delete; with a prefix, only if every tunnel's owner starts with it (else Conflict)."""
        query = f"?unless_used_by_others={urllib.parse.quote(unless_used_by_others, safe='')}" \
            if unless_used_by_others is not None else ""
        return self._delete("delete_socket", f"socket/{socket_id}{query}", before_send)

    def create_tunnel(self, socket_id, owner=None, backend=None):
        body = {"owner": owner} if owner else {}
        if backend:
            body["backend"] = backend           # a backend group of the socket's route table (edge addition)
        return self._request("create_tunnel", "POST", f"socket/{socket_id}/tunnel", body, retry=False)

    def put_routes(self, socket_id, table):
        """Give a socket its route table (an edge addition, edge/README.md); the socket as it is then."""
        return self._request("put_routes", "PUT", f"socket/{socket_id}/routes", {"routes": table})

    def put_hostnames(self, socket_id, names, before_send=None):
        """Set a socket's custom hostnames (an edge addition, edge/README.md); the socket as it is then,
        each name with `verified` and the `message` that says what record proves it."""
        return self._request("put_hostnames", "PUT", f"socket/{socket_id}/hostnames", {"hostnames": list(names)},
                             before_send=before_send)

    def delete_tunnel(self, socket_id, tunnel_id, before_send=None):
        return self._delete("delete_tunnel", f"socket/{socket_id}/tunnel/{tunnel_id}", before_send)

    def edge_nodes(self):
        """How many nodes of the edge are live (`live_nodes`), 1 when the edge does not say."""
        return max(1, len(self.live_nodes() or ()))

    def live_nodes(self):
        """The names of the edge's live nodes: `GET /health`'s `live_nodes` (this project's edge,
        edge/README.md); None when the edge does not say (an older edge, the historical service), which
        counts as one node, so no replica asks for tunnels on nodes that do not exist. A health check,
        not an API call: no token, not counted in mysocketd_api_requests_total."""
        try:
            resp = self.http.get(self.api_url + "health", timeout=self.timeout)
            body = resp.json()
        except requests.RequestException as e:
            raise Unavailable("edge_nodes", None, f"cannot reach {self.api_url} ({e.__class__.__name__})") from None
        except ValueError:
            return None
        nodes = body.get("live_nodes") if isinstance(body, dict) else None
        return frozenset(str(n) for n in nodes) if isinstance(nodes, list) else None

    # -- plumbing --------------------------------------------------------------

    def _delete(self, call, path, before_send=None):
        """True if deleted, False if it was already gone: deleting is idempotent for the caller."""
        try:
            self._request(call, "DELETE", path, before_send=before_send)
            return True
        except NotFound:
            return False

    def _ensure_token(self):
        if self._token is None or self.clock() >= self._renew_at:
            self.login()

    def _request(self, call, method, path, body=None, auth=True, retry=True, before_send=None):
        attempt, relogged = 0, False
        while True:
            attempt += 1
            headers = {}
            if auth:
                self._ensure_token()
                headers["x-access-token"] = self._token
            if before_send is not None:
                before_send()               # raises when this write may no longer be sent (the fence)
            sent = time.monotonic()
            try:
                resp = self.http.request(method, self.api_url + path, json=body, headers=headers,
                                         timeout=self.timeout)
            except requests.RequestException as e:
                metrics.API_SECONDS.labels(call).observe(time.monotonic() - sent)
                metrics.API_REQUESTS.labels(call, "error").inc()
                error = Unavailable(call, None, f"cannot reach {self.api_url} ({e.__class__.__name__})")
            else:
                metrics.API_SECONDS.labels(call).observe(time.monotonic() - sent)
                metrics.API_REQUESTS.labels(call, str(resp.status_code)).inc()
                if resp.status_code == 401 and auth and not relogged:
                    # An expired or revoked token: log in once more, without spending an attempt.
                    relogged, self._token, attempt = True, None, attempt - 1
                    continue
                if resp.status_code != 429 and resp.status_code < 500:
                    return self._answer(call, resp)
                error = Unavailable(call, resp.status_code, _message(resp), _retry_after(resp, self.clock()))
            if attempt >= self.attempts or (not retry and error.status != 429):   # a 429 was not done
                raise error
            if error.retry_after is not None and error.retry_after > self.max_retry_after:
                raise error                     # the caller waits that long for this one Service
            self.sleep(error.retry_after if error.retry_after is not None else 0.2 * 2 ** (attempt - 1))

    def _answer(self, call, resp):
        if resp.status_code >= 400 and _is_page(resp):
            raise ApiError(call, resp.status_code, self._not_the_api(resp))
        if resp.status_code == 401:
            if call == "login":
                raise BadCredentials(call, 401, f"the API refused the e-mail and password for {self.email}")
            raise BadCredentials(call, 401, "the API refused a fresh token")
        if resp.status_code == 404:
            raise NotFound(call, 404, _message(resp))
        if resp.status_code == 409:
            raise Conflict(call, 409, _message(resp))
        if resp.status_code >= 400:
            raise ApiError(call, resp.status_code, _message(resp))
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise ApiError(call, resp.status_code, self._not_the_api(resp)) from None

    def _not_the_api(self, resp):
        kind = resp.headers.get("Content-Type", "no content type")
        return f"expected JSON from {self.api_url}, got {kind}: is --api-url the Mysocket API?"


def _is_page(resp):
    """An answer with a body that is not JSON: a web page or a proxy's, not the API's."""
    if not resp.content:
        return False
    try:
        resp.json()
    except ValueError:
        return True
    return False


def _message(resp):
    try:
        body = resp.json()
        if isinstance(body, dict) and body.get("error_message"):
            return str(body["error_message"])[:200]
    except ValueError:
        pass
    return resp.reason or "error"


def _retry_after(resp, now):
    """Retry-After in seconds from now (delta-seconds or an HTTP date); None if absent or nonsense."""
    value = resp.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
