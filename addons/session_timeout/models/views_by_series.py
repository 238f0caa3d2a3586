"""The records whose form differs between Odoo 17.0 and 18.0.

A list view's root is ``<tree>`` on 17.0 and ``<list>`` on 18.0, and a window
action names the mode ``tree`` or ``list``: neither series accepts the other's
word, so no data file can hold them for both. The data file calls
``load_version_records`` instead, which loads them with the series' word under
ordinary xml ids (session_timeout.<name>), as a data file would: updated on
every module update, removed on uninstall.
"""

from odoo.release import version_info

LIST = "list" if version_info[0] >= 18 else "tree"

# ({tag} is the series' word)
RULE_LIST_ARCH = """
<{tag} string="Session Timeout Rules">
    <field name="name"/>
    <field name="group_id" optional="hide"/>
    <field name="user_id" optional="hide"/>
    <field name="idle_s"/>
    <field name="absolute_s"/>
    <field name="exempt"/>
    <field name="preset" optional="show"/>
    <field name="active" widget="boolean_toggle" optional="hide"/>
</{tag}>
"""

# Read only: the lines are computed afresh each time the report is opened.
REPORT_LIST_ARCH = """
<{tag} string="Session Timeout Compliance Report" create="0" edit="0" delete="0">
    <field name="applies_to"/>
    <field name="idle_s"/>
    <field name="absolute_s"/>
    <field name="exempt"/>
    <field name="pci_dss_4" decoration-success="pci_dss_4 == 'met'" decoration-danger="pci_dss_4 != 'met'"/>
    <field name="nist_aal2" decoration-success="nist_aal2 == 'met'" decoration-danger="nist_aal2 != 'met'"/>
    <field name="nist_aal3" decoration-success="nist_aal3 == 'met'" decoration-danger="nist_aal3 != 'met'"/>
    <field name="owasp_high" decoration-success="owasp_high == 'met'" decoration-danger="owasp_high != 'met'"/>
    <field name="owasp_low" decoration-success="owasp_low == 'met'" decoration-danger="owasp_low != 'met'"/>
    <field name="psd2" decoration-success="psd2 == 'met'" decoration-danger="psd2 != 'met'"/>
</{tag}>
"""

RULES_HELP = """<p class="o_view_nocontent_smiling_face">Add a session timeout rule</p>
<p>A rule gives a group or one user a shorter idle timeout or absolute lifetime than the
default of General Settings, or exempts one user. The strictest of the default and every
rule naming a user applies to that user's sessions.</p>"""


def report_view_mode():
    """The view mode of the report's action, in the series' word."""
    return LIST


def load_version_records(env):
    env["ir.ui.view"]._load_records([
        {
            "xml_id": "session_timeout.session_timeout_rule_view_list",
            "values": {
                "name": "session_timeout.rule.list",
                "model": "session_timeout.rule",
                "arch": RULE_LIST_ARCH.format(tag=LIST),
            },
        },
        {
            "xml_id": "session_timeout.session_timeout_report_line_view_list",
            "values": {
                "name": "session_timeout.report.line.list",
                "model": "session_timeout.report.line",
                "arch": REPORT_LIST_ARCH.format(tag=LIST),
            },
        },
    ], update=True)
    env["ir.actions.act_window"]._load_records([
        {
            "xml_id": "session_timeout.session_timeout_rule_action",
            "values": {
                "name": "Session Timeout Rules",
                "res_model": "session_timeout.rule",
                "view_mode": "%s,form" % LIST,
                "help": RULES_HELP,
                "groups_id": [(6, 0, [env.ref("base.group_system").id])],
            },
        },
    ], update=True)
