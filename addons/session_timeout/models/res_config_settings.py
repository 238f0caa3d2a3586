from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

# The system parameter of the add-on this product replaces; the sidecar reads it.
TIMEOUT_KEY = "activity_session_timeout_key"
DEFAULT_TIMEOUT_S = 300
MAX_TIMEOUT_S = 30 * 24 * 3600


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

    @api.model
    def get_values(self):
        res = super().get_values()
        raw = self.env["ir.config_parameter"].sudo().get_param(TIMEOUT_KEY)
        res["session_timeout_seconds"] = effective_timeout(raw)
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
        params = self.env["ir.config_parameter"].sudo()
        new = str(effective_timeout(value))
        if params.get_param(TIMEOUT_KEY) != new:
            params.set_param(TIMEOUT_KEY, new)
