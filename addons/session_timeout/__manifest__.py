# One source for Odoo 17.0 and 18.0. `make addon` writes the installable
# copies (dist/addons/<series>/session_timeout and a zip of each) with the
# version prefixed by the series ("17.0.1.0.0", "18.0.1.0.0": Odoo refuses
# another series) and the freshly built browser client under static/lib/.
{
    "name": "Auto Session Timeout",
    "summary": "Log internal users out after real inactivity, enforced on the server by the session-timeout sidecar",
    "version": "1.0.0",
    "category": "Hidden/Tools",
    "author": "Auto Session Timeout",
    "license": "LGPL-3",
    "depends": ["base_setup", "web"],
    "data": [
        "security/ir.model.access.csv",
        # Before the settings view, whose buttons open its actions.
        "views/session_timeout_rule_views.xml",
        "views/res_users_views.xml",
        "views/res_config_settings_views.xml",
    ],
    "assets": {
        # Only the service is bundled (and transpiled) by Odoo. The generated
        # wasm-bindgen glue and the wasm stay under static/lib/, out of the
        # transpiler's reach, and are loaded at run time with a native import().
        "web.assets_backend": [
            "session_timeout/static/src/session_timeout_service.js",
        ],
    },
    "installable": True,
    "application": False,
}
