from . import res_config_settings, res_users, session_timeout_rule, session_timeout_report
