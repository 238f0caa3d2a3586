from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from .compliance import preset_selection, preset_values

# The system parameter of the add-on this product replaces; the sidecar reads it.
TIMEOUT_KEY = "activity_session_timeout_key"
DEFAULT_TIMEOUT_S = 300
MAX_TIMEOUT_S = 30 * 24 * 3600
# The opt-in notice before a logout, in seconds (0: off); the sidecar reads it
# beside the timeout and tells the page at most half the timeout.
WARN_KEY = "session_timeout_warn_before_s"
MAX_WARN_S = 24 * 3600
# The default absolute lifetime of a session, in seconds (0: none): however
# active its user, a session ends this long after its log-in. The sidecar
# takes 0 or 60 to 30 days (server/src/policy.rs, parse_lifetime).
LIFETIME_KEY = "session_timeout_absolute_lifetime_s"
MIN_LIFETIME_S = 60
MAX_LIFETIME_S = 30 * 24 * 3600


def effective_warn_before(raw):
    """The notice's lead a stored value gives: 0 to 86400 seconds, else 0 (off)."""
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        return 0
    return value if 0 <= value <= MAX_WARN_S else 0


def effective_lifetime(raw):
    """The absolute lifetime a stored value gives, by the sidecar's rule:
    0 (none), or 60 seconds to 30 days; anything else gives 0."""
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        return 0
    return value if value == 0 or MIN_LIFETIME_S <= value <= MAX_LIFETIME_S else 0


def effective_timeout(raw):
    """The timeout a stored value gives, by the sidecar's rule
    (server/src/policy.rs): a whole number of seconds from 1 to 30 days;
    anything else (unset, empty, zero, negative, not a number) gives 300."""
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT_S
    return value if 1 <= value <= MAX_TIMEOUT_S else DEFAULT_TIMEOUT_S


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    # Not `config_parameter=`: Odoo would crash opening the settings on a
    # parameter that is not a number, and delete the parameter on a 0.
    session_timeout_seconds = fields.Integer(
        string="Session timeout (seconds)",
        help="Internal users are logged out after this many seconds without real activity "
             "(mouse, keys, scrolling, touch) in the back office. Empty, zero or negative: 300.",
    )

    session_timeout_warn_before = fields.Integer(
        string="Notice before logout (seconds)",
        help="This many seconds before the logout, the back office shows a notice with a "
             "\"Stay signed in\" button (never a dialog). 0: no notice. At most half the timeout.",
    )

    session_timeout_absolute_lifetime = fields.Integer(
        string="Absolute lifetime (seconds)",
        help="However active its user, a session ends this many seconds after its log-in. "
             "0: no limit. Else 60 to 2592000 (30 days).",
    )

    # Only fills the two fields above; what is saved is their values.
    session_timeout_preset = fields.Selection(
        selection=preset_selection(),
        string="Compliance preset",
        help="Fills the session timeout and the absolute lifetime with the values that meet this standard.",
    )

    @api.onchange("session_timeout_preset")
    def _onchange_session_timeout_preset(self):
        values = preset_values(self.session_timeout_preset)
        if values:
            self.session_timeout_seconds, self.session_timeout_absolute_lifetime = values

    @api.model
    def get_values(self):
        res = super().get_values()
        params = self.env["ir.config_parameter"].sudo()
        res["session_timeout_seconds"] = effective_timeout(params.get_param(TIMEOUT_KEY))
        res["session_timeout_warn_before"] = effective_warn_before(params.get_param(WARN_KEY))
        res["session_timeout_absolute_lifetime"] = effective_lifetime(params.get_param(LIFETIME_KEY))
        return res

    def set_values(self):
        super().set_values()
        if not self.env.user.has_group("base.group_system"):
            return
        value = self.session_timeout_seconds or 0
        if value > MAX_TIMEOUT_S:
            raise ValidationError(_(
                "Session timeout: %(value)s seconds is more than 30 days (%(max)s seconds).",
                value=value, max=MAX_TIMEOUT_S,
            ))
        warn = self.session_timeout_warn_before or 0
        if not 0 <= warn <= MAX_WARN_S:
            raise ValidationError(_(
                "Notice before logout: %(value)s seconds is not between 0 and %(max)s.",
                value=warn, max=MAX_WARN_S,
            ))
        lifetime = self.session_timeout_absolute_lifetime or 0
        if lifetime != 0 and not MIN_LIFETIME_S <= lifetime <= MAX_LIFETIME_S:
            # The sidecar refuses a lifetime under a minute: saving one here
            # would silently leave the previous lifetime in force.
            raise ValidationError(_(
                "Absolute lifetime: %(value)s seconds is not 0 (no limit) nor between "
                "%(min)s and %(max)s (30 days).",
                value=lifetime, min=MIN_LIFETIME_S, max=MAX_LIFETIME_S,
            ))
        params = self.env["ir.config_parameter"].sudo()
        new = str(effective_timeout(value))
        if params.get_param(TIMEOUT_KEY) != new:
            params.set_param(TIMEOUT_KEY, new)
        if params.get_param(WARN_KEY) != str(warn):
            params.set_param(WARN_KEY, str(warn))
        if params.get_param(LIFETIME_KEY) != str(lifetime):
            params.set_param(LIFETIME_KEY, str(lifetime))
