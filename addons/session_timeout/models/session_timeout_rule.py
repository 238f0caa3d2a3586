"""Rules per group and per user, set by administrators.

The sidecar applies, to each session, the strictest of the default and every
rule that names its user (directly or through a group): the shortest idle
timeout and the shortest absolute lifetime. A user rule can instead exempt
one user (never logged out). The sidecar reads the rules from the settings
route (controllers/main.py) as ``policy_rules``; each rule sent there must pass
the sidecar's own check (server/src/rules.rs, Rule::validate), or the sidecar
keeps the rules it had, so the constraints below are the same.
"""

import json

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from .compliance import matching_preset, preset_selection, preset_values

MAX_RULE_S = 30 * 24 * 3600
# The sidecar refuses a group name longer than this.
MAX_GROUP_NAME = 200
# Who last deleted a rule, and when: a deletion leaves no rule to carry its
# write_uid, yet it changes the policy as much as an edit does.
DELETED_KEY = "session_timeout_rules_deleted"


class SessionTimeoutRule(models.Model):
    _name = "session_timeout.rule"
    _description = "Session timeout rule (per group or per user)"
    _order = "id"

    name = fields.Char(compute="_compute_name", string="Applies to")
    active = fields.Boolean(default=True)
    group_id = fields.Many2one(
        "res.groups", string="Group", ondelete="cascade", index=True,
        domain=[("share", "=", False)],
        help="Every active internal user of this group (including those who have it through "
             "another group that implies it).",
    )
    user_id = fields.Many2one(
        "res.users", string="User", ondelete="cascade", index=True,
        domain=[("share", "=", False)],
        help="One internal user.",
    )
    idle_s = fields.Integer(
        string="Idle timeout (seconds)",
        help="Logged out after this many seconds without activity. 0: this rule does not set it "
             "(the default or another rule applies).",
    )
    absolute_s = fields.Integer(
        string="Absolute lifetime (seconds)",
        help="A session ends this many seconds after its log-in, however active. 0: this rule "
             "does not set it.",
    )
    exempt = fields.Boolean(
        string="Exempt (never logged out)",
        help="This user is never logged out for inactivity or age, whatever the default and the "
             "rules of their groups. Only for a single user, e.g. a wall display account.",
    )
    # Not stored: the preset the values match (empty once they are edited by
    # hand). Choosing one fills the values.
    preset = fields.Selection(
        selection=preset_selection(), string="Compliance preset",
        compute="_compute_preset", inverse="_inverse_preset", readonly=False,
        help="Fills the idle timeout and the absolute lifetime with the values that meet this standard.",
    )

    @api.depends("group_id.full_name", "user_id.login")
    def _compute_name(self):
        for rule in self:
            if rule.group_id:
                rule.name = _("Group: %s", rule.group_id.full_name)
            elif rule.user_id:
                rule.name = _("User: %s", rule.user_id.login)
            else:
                rule.name = _("New rule")

    @api.depends("idle_s", "absolute_s", "exempt")
    def _compute_preset(self):
        for rule in self:
            rule.preset = not rule.exempt and matching_preset(rule.idle_s, rule.absolute_s)

    def _inverse_preset(self):
        for rule in self:
            values = preset_values(rule.preset)
            if values:
                rule.idle_s, rule.absolute_s = values

    @api.onchange("preset")
    def _onchange_preset(self):
        values = preset_values(self.preset)
        if values:
            self.idle_s, self.absolute_s = values
            self.exempt = False

    @api.onchange("exempt")
    def _onchange_exempt(self):
        # An exempt user has no limits to keep.
        if self.exempt:
            self.idle_s = self.absolute_s = 0

    @api.constrains("group_id", "user_id", "idle_s", "absolute_s", "exempt")
    def _check_rule(self):
        for rule in self:
            if bool(rule.group_id) == bool(rule.user_id):
                raise ValidationError(_(
                    "A session timeout rule is for one group or one user: set exactly one of "
                    "Group and User (this one sets %(what)s).",
                    what=_("both") if rule.group_id else _("neither"),
                ))
            for field, value in (("idle_s", rule.idle_s), ("absolute_s", rule.absolute_s)):
                if not 0 <= value <= MAX_RULE_S:
                    raise ValidationError(_(
                        "%(rule)s: %(field)s of %(value)s seconds is not between 0 (not set) and "
                        "%(max)s (30 days).",
                        rule=rule.name, field=rule._fields[field].string, value=value, max=MAX_RULE_S,
                    ))
            if rule.exempt and rule.group_id:
                raise ValidationError(_(
                    "%(rule)s: only a single user can be exempt (never logged out), not a group.",
                    rule=rule.name,
                ))
            if rule.exempt and (rule.idle_s or rule.absolute_s):
                raise ValidationError(_(
                    "%(rule)s: an exempt user is never logged out, so the rule cannot also set an "
                    "idle timeout or an absolute lifetime; set both to 0 or clear Exempt.",
                    rule=rule.name,
                ))
            if not (rule.exempt or rule.idle_s or rule.absolute_s):
                raise ValidationError(_(
                    "%(rule)s sets nothing: give an idle timeout, an absolute lifetime, or (for a "
                    "user) Exempt.",
                    rule=rule.name,
                ))
            if rule.user_id and rule.user_id.sudo().share:
                # Portal and public users never reach the back office the
                # sidecar guards.
                raise ValidationError(_(
                    "%(rule)s: %(login)s is not an internal user; rules apply to internal users only.",
                    rule=rule.name, login=rule.user_id.login,
                ))

    @staticmethod
    def _expand_preset(vals):
        # A preset given with the values (through RPC, or an import) fills
        # them before the constraints look at them, not after.
        values = preset_values(vals.get("preset"))
        if values:
            vals = dict(vals, idle_s=values[0], absolute_s=values[1])
        return vals

    @api.model_create_multi
    def create(self, vals_list):
        return super().create([self._expand_preset(vals) for vals in vals_list])

    def write(self, vals):
        return super().write(self._expand_preset(vals))

    def unlink(self):
        if self:
            self.env["ir.config_parameter"].sudo().set_param(DELETED_KEY, json.dumps({
                "by": self.env.user.login,
                "at": fields.Datetime.to_string(fields.Datetime.now()),
            }))
        return super().unlink()

    # The answer of the settings route. Deterministic: the same data give the
    # same JSON (the sidecar compares it with what it has to tell a change).

    @api.model
    def _session_timeout_policy_rules(self):
        """The active rules the sidecar enforces, by id: a group rule lists
        its active internal users (``uids``); a user rule whose user is no
        longer an active internal user is left out."""
        rules = self.sudo().with_context(lang="en_US", active_test=True).search([], order="id")
        xmlids = rules.group_id.get_external_id()
        policy = []
        for rule in rules:
            if rule.group_id:
                # Odoo adds implied groups to users' groups_id, so `users`
                # holds those who have the group through another one too.
                uids = sorted(u.id for u in rule.group_id.users if u.active and not u.share)
                policy.append({
                    "id": rule.id,
                    "group": (rule.group_id.full_name or rule.group_id.name or "")[:MAX_GROUP_NAME],
                    "group_xmlid": xmlids.get(rule.group_id.id) or None,
                    "uids": uids,
                    "idle_s": rule.idle_s or None,
                    "absolute_s": rule.absolute_s or None,
                })
            elif rule.user_id.active and not rule.user_id.share:
                # An exempt user has no limits (the sidecar refuses both).
                policy.append({
                    "id": rule.id,
                    "user": rule.user_id.id,
                    "login": rule.user_id.login,
                    "idle_s": None if rule.exempt else rule.idle_s or None,
                    "absolute_s": None if rule.exempt else rule.absolute_s or None,
                    "exempt": bool(rule.exempt),
                })
        return policy

    @api.model
    def _session_timeout_changed_by(self):
        """The login of who last created, changed or deleted a rule
        (archived rules included), or None when there never was one."""
        last = self.sudo().with_context(active_test=False).search([], order="write_date desc, id desc", limit=1)
        candidates = []
        if last:
            candidates.append((fields.Datetime.to_string(last.write_date), last.write_uid.login))
        try:
            deleted = json.loads(self.env["ir.config_parameter"].sudo().get_param(DELETED_KEY) or "null")
            if isinstance(deleted, dict) and isinstance(deleted.get("at"), str) and isinstance(deleted.get("by"), str):
                candidates.append((deleted["at"], deleted["by"]))
        except ValueError:
            pass
        return max(candidates)[1] if candidates else None
