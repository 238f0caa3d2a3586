"""The compliance report: which standards the default and each rule meet.

Its lines are transient, computed afresh each time an administrator opens
the report (the server action session_timeout_report_action), so it always
shows the settings in force, with no SQL view to keep in step.
"""

from odoo import _, api, fields, models
from odoo.exceptions import AccessError
from odoo.release import version_info

from .compliance import STANDARDS, evaluate
from .res_config_settings import LIFETIME_KEY, TIMEOUT_KEY, effective_lifetime, effective_timeout


def report_view_mode():
    """The list view's mode in this series' word: "tree" on 17.0, "list" on
    18.0 (neither accepts the other's; build-addon.sh rewrites the XML)."""
    return "list" if version_info[0] >= 18 else "tree"


def _standard_column(std_id):
    _id, label, clause, max_idle, max_absolute = next(s for s in STANDARDS if s[0] == std_id)
    return fields.Char(
        string="%s %s" % (label, clause),
        readonly=True,
        help="%s, %s: met when the idle timeout is at most %d seconds%s, and the user is not exempt."
             % (label, clause, max_idle,
                " and the absolute lifetime is set and at most %d seconds" % max_absolute
                if max_absolute else ""),
    )


class SessionTimeoutReportLine(models.TransientModel):
    _name = "session_timeout.report.line"
    _description = "Session timeout compliance report line"
    _order = "sequence, id"

    sequence = fields.Integer(readonly=True)
    rule_id = fields.Many2one("session_timeout.rule", string="Rule", readonly=True, ondelete="cascade")
    applies_to = fields.Char(string="Applies to", readonly=True)
    idle_s = fields.Integer(string="Idle timeout (seconds)", readonly=True)
    absolute_s = fields.Integer(
        string="Absolute lifetime (seconds)", readonly=True, help="0: none (sessions never expire by age).",
    )
    exempt = fields.Boolean(string="Exempt (never logged out)", readonly=True)
    # One column per standard, named as in compliance.COLUMNS (evaluate()).
    pci_dss_4 = _standard_column("pci-dss-4")
    nist_aal2 = _standard_column("nist-aal2")
    nist_aal3 = _standard_column("nist-aal3")
    owasp_high = _standard_column("owasp-high")
    owasp_low = _standard_column("owasp-low")
    psd2 = _standard_column("psd2")

    @api.model
    def action_session_timeout_open_report(self):
        """Computes the report's lines for the current user (replacing the
        ones of an earlier opening) and returns the list that shows them."""
        if not self.env.user.has_group("base.group_system"):
            raise AccessError(_("Only a Settings administrator can see the session timeout compliance report."))
        self.search([("create_uid", "=", self.env.uid)]).unlink()
        params = self.env["ir.config_parameter"].sudo()
        default_idle = effective_timeout(params.get_param(TIMEOUT_KEY))
        default_absolute = effective_lifetime(params.get_param(LIFETIME_KEY))
        lines = [{
            "applies_to": _("All internal users (default)"),
            "idle_s": default_idle,
            "absolute_s": default_absolute,
            "exempt": False,
        }]
        rules = self.env["session_timeout.rule"].sudo().search([], order="id")
        for rule in rules:
            # As the sidecar is told (controllers/main.py): a user rule whose
            # user is no longer an active internal user applies to no one.
            if rule.user_id and (not rule.user_id.active or rule.user_id.share):
                continue
            if rule.exempt:
                lines.append({"rule_id": rule.id, "applies_to": rule.name, "idle_s": 0, "absolute_s": 0, "exempt": True})
            else:
                lines.append({
                    "rule_id": rule.id,
                    "applies_to": rule.name,
                    "idle_s": rule.idle_s or default_idle,
                    "absolute_s": rule.absolute_s or default_absolute,
                    "exempt": False,
                })
        for sequence, line in enumerate(lines):
            line["sequence"] = sequence
            line.update(evaluate(line["idle_s"], line["absolute_s"], line["exempt"]))
        records = self.create(lines)
        return {
            "type": "ir.actions.act_window",
            "name": _("Session Timeout Compliance Report"),
            "res_model": self._name,
            "view_mode": report_view_mode(),
            "views": [(self.env.ref("session_timeout.session_timeout_report_line_view_list").id, report_view_mode())],
            "domain": [("id", "in", records.ids)],
            "target": "current",
            "context": {"create": False, "edit": False, "delete": False},
        }

