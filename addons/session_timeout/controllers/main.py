"""The route the session-timeout sidecar reads the idle timeout (and the
lead of the opt-in notice before a logout, the default absolute lifetime, the
rules per group and per user, and the requests to end every session of a
user) from.

The system parameter ``activity_session_timeout_key`` is the one source of
truth for the idle timeout. The sidecar (started with ``--erp-settings-url``)
reads it here every two seconds and enforces it; it never writes it. The
sidecar proves itself with a bearer token, the option ``session_timeout_token``
of odoo.conf (the same value as the sidecar's ``--erp-token-file``). The token
lives in server files only: it is never stored in the database or sent to a
browser.

The answer is deterministic: the same data give byte-identical JSON, as the
sidecar compares it with the last one to tell a change.
"""

import hmac
import json

from odoo import http
from odoo.http import request
from odoo.tools import config

from ..models.res_config_settings import LIFETIME_KEY, TIMEOUT_KEY, WARN_KEY

MIN_TOKEN_LENGTH = 16


def _json(status, body):
    return request.make_response(
        json.dumps(body),
        headers=[("Content-Type", "application/json"), ("Cache-Control", "no-store")],
        status=status,
    )


class SessionTimeoutSettings(http.Controller):
    @http.route(
        "/session_timeout/settings",
        type="http",
        auth="none",
        methods=["GET"],
        csrf=False,
        save_session=False,
    )
    def settings(self):
        expected = str(config.get("session_timeout_token") or "")
        if len(expected) < MIN_TOKEN_LENGTH:
            return _json(403, {
                "error": "token_not_configured",
                "message": "set session_timeout_token (at least %d characters) in odoo.conf, "
                           "the same value as the sidecar's --erp-token-file" % MIN_TOKEN_LENGTH,
            })
        given = request.httprequest.headers.get("Authorization", "")
        given = given[len("Bearer "):].strip() if given.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _json(401, {
                "error": "token_wrong",
                "message": "send Authorization: Bearer <session_timeout_token of odoo.conf>",
            })
        params = request.env["ir.config_parameter"].sudo()
        raw = params.get_param(TIMEOUT_KEY)
        warn = params.get_param(WARN_KEY)
        lifetime = params.get_param(LIFETIME_KEY)
        rules = request.env["session_timeout.rule"].sudo()
        return _json(200, {
            TIMEOUT_KEY: raw if raw is not False else None,
            # The sidecar's name for it (warn_before_s); null when never set.
            "warn_before_s": warn if warn is not False else None,
            # Raw, as the timeout: the sidecar checks it (0 = none); null when never set.
            "absolute_lifetime_s": lifetime if lifetime is not False else None,
            "policy_rules": rules._session_timeout_policy_rules(),
            # For the sidecar's audit log of a change of the rules.
            "policy_changed_by": rules._session_timeout_changed_by(),
            "end_sessions": request.env["res.users"].sudo()._session_timeout_end_requests(),
        })
