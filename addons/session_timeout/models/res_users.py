"""The "End every session" button of a user's form.

Odoo cannot end another user's sessions itself (they live in the session
store, found only by their id). So the button records the request in the
system parameter ``session_timeout_end_sessions``; the sidecar reads it from
the settings route every two seconds and ends every session of that user
that began before the request. A request is kept 10 minutes: long enough for
every sidecar replica to see it, short enough to keep the list small.
"""

import json
import time

from odoo import _, api, models
from odoo.exceptions import AccessError

END_SESSIONS_KEY = "session_timeout_end_sessions"
KEEP_MS = 10 * 60 * 1000
# A bound on the list, whatever happens (a script pressing the button).
MAX_REQUESTS = 1000


def recent_end_requests(raw, now_ms):
    """The well-formed requests of a stored value asked within the last 10
    minutes, in the order they were asked. A corrupt value gives []."""
    try:
        entries = json.loads(raw or "[]")
    except (TypeError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    recent = []
    for e in entries:
        if not isinstance(e, dict):
            continue
        uid, at_ms, login, by = e.get("uid"), e.get("at_ms"), e.get("login"), e.get("by")
        if not (isinstance(uid, int) and not isinstance(uid, bool) and uid > 0):
            continue
        if not (isinstance(at_ms, int) and not isinstance(at_ms, bool) and now_ms - at_ms <= KEEP_MS):
            continue
        if not (isinstance(login, str) and isinstance(by, str)):
            continue
        recent.append({"uid": uid, "login": login, "at_ms": at_ms, "by": by})
    return recent[-MAX_REQUESTS:]


class ResUsers(models.Model):
    _inherit = "res.users"

    def action_session_timeout_end_sessions(self):
        """Asks the sidecar to end every session of these users (those that
        began before now), within seconds."""
        if not self.env.user.has_group("base.group_system"):
            raise AccessError(_("Only a Settings administrator can end the sessions of a user."))
        params = self.env["ir.config_parameter"].sudo()
        now_ms = int(time.time() * 1000)
        requests = recent_end_requests(params.get_param(END_SESSIONS_KEY), now_ms)
        for user in self:
            requests.append({"uid": user.id, "login": user.login, "at_ms": now_ms, "by": self.env.user.login})
        params.set_param(END_SESSIONS_KEY, json.dumps(requests[-MAX_REQUESTS:]))
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "title": _("Sessions ending"),
                "message": _("Every session of %s ends within seconds.", ", ".join(self.mapped("login"))),
                "sticky": False,
            },
        }

    @api.model
    def _session_timeout_end_requests(self):
        """The requests of the last 10 minutes, for the settings route."""
        raw = self.env["ir.config_parameter"].sudo().get_param(END_SESSIONS_KEY)
        return recent_end_requests(raw, int(time.time() * 1000))
