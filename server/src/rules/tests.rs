use proptest::prelude::*;

use super::*;

fn group(name: &str, uids: &[i32], idle: Option<u64>, abs: Option<u64>) -> Rule {
    Rule {
        group: Some(name.into()),
        uids: Some(uids.to_vec()),
        idle_s: idle,
        absolute_s: abs,
        ..Rule::default()
    }
}

fn user(uid: i32, idle: Option<u64>, abs: Option<u64>, exempt: bool) -> Rule {
    Rule {
        user: Some(uid),
        idle_s: idle,
        absolute_s: abs,
        exempt,
        ..Rule::default()
    }
}

fn role(name: &str, idle: Option<u64>, abs: Option<u64>) -> Rule {
    Rule {
        group: Some(name.into()),
        idle_s: idle,
        absolute_s: abs,
        ..Rule::default()
    }
}

const DEFAULT: Policy = Policy {
    timeout_ms: 300_000,
    absolute_lifetime_ms: None,
};

fn timed(idle_s: i64, abs_s: Option<i64>) -> Effective {
    Effective::Timed(Policy {
        timeout_ms: idle_s * 1000,
        absolute_lifetime_ms: abs_s.map(|s| s * 1000),
    })
}

#[test]
fn the_strictest_rule_of_every_group_a_user_is_in_wins() {
    let rules = vec![
        group("Accounting", &[5, 7], Some(120), None),
        group("Warehouse", &[7, 9], Some(600), Some(28_800)),
    ];
    let c = Compiled::new(&rules);
    let f = |uid| Facts {
        uid,
        ..Facts::default()
    };
    // Each limit from the strictest rule that sets it, the rest from the default.
    assert_eq!(c.effective(DEFAULT, f(5)), timed(120, None));
    assert_eq!(c.effective(DEFAULT, f(9)), timed(600, Some(28_800)));
    assert_eq!(c.effective(DEFAULT, f(7)), timed(120, Some(28_800)));
    // A group can be looser than the default; nobody else is touched.
    assert_eq!(c.effective(DEFAULT, f(8)), timed(300, None));
}

#[test]
fn an_exempt_user_is_exempt_whatever_their_groups_say() {
    let rules = vec![role("admin", Some(60), None), user(3, None, None, true)];
    let c = Compiled::new(&rules);
    let admin = |uid| Facts {
        uid,
        is_admin: true,
        is_system: false,
    };
    assert_eq!(c.effective(DEFAULT, admin(3)), Effective::Exempt);
    assert_eq!(c.effective(DEFAULT, admin(2)), timed(60, None));
}

#[test]
fn the_erp_session_info_roles_match_the_sidecar_groups() {
    let rules = vec![
        role("admin", Some(600), None),
        role("system", Some(120), Some(3600)),
    ];
    let c = Compiled::new(&rules);
    let f = |is_admin, is_system| Facts {
        uid: 2,
        is_admin,
        is_system,
    };
    assert_eq!(c.effective(DEFAULT, f(false, false)), timed(300, None));
    assert_eq!(c.effective(DEFAULT, f(true, false)), timed(600, None));
    assert_eq!(c.effective(DEFAULT, f(true, true)), timed(120, Some(3600)));
    assert_eq!(Facts::with_roles(2, f(true, true).roles()), f(true, true));
}

#[test]
fn bad_rules_are_refused_with_what_is_wrong() {
    let cases = [
        (
            role("accountants", Some(60), None),
            "unknown group `accountants`",
        ),
        (user(0, Some(60), None, false), "not a user id"),
        (user(4, None, None, false), "sets nothing"),
        (user(4, Some(60), None, true), "exempt user has no limits"),
        (user(4, Some(0), None, false), "idle_s 0 is not between"),
        (
            user(4, None, Some(40 * 86_400), false),
            "absolute_s 3456000",
        ),
        (
            Rule {
                exempt: true,
                ..group("Sales", &[2], None, None)
            },
            "only a single user can be exempt",
        ),
        (
            Rule {
                user: Some(3),
                ..role("admin", Some(60), None)
            },
            "both a group and a user",
        ),
        (group("Sales", &[2, -1], Some(60), None), "member uid -1"),
    ];
    for (rule, want) in cases {
        let e = rule.validate().unwrap_err();
        assert!(e.contains(want), "{e} should say {want}");
    }
    assert!(parse_rules("{}").unwrap_err().contains("JSON array"));
    assert_eq!(parse_rules("").unwrap(), vec![]);
}

#[test]
fn stored_text_is_canonical_and_reads_back() {
    let rules = vec![
        group("Accounting", &[5], Some(120), None),
        user(9, None, None, true),
    ];
    let text = rules_text(&rules);
    assert_eq!(parse_rules(&text).unwrap(), rules);
    assert_eq!(
        text,
        r#"[{"group":"Accounting","uids":[5],"idle_s":120,"absolute_s":null},{"user":9,"idle_s":null,"absolute_s":null,"exempt":true}]"#
    );
}

#[test]
fn presets_meet_their_own_standard() {
    for p in PRESETS {
        let s = STANDARDS.iter().find(|s| s.id == p.id).unwrap();
        assert!(s.met_by(Some(p.idle_s), p.absolute_s), "{}", p.id);
    }
    assert!(preset("pci")
        .unwrap_err()
        .contains("known: pci-dss-4, nist-aal2"));
}

#[test]
fn the_report_names_each_standard_met_or_not() {
    let rules = vec![
        group("Accounting", &[5], Some(600), Some(28_800)),
        user(9, None, None, true),
    ];
    let lines = report(
        Policy {
            timeout_ms: 900_000,
            absolute_lifetime_ms: None,
        },
        &rules,
    );
    let met = |l: &ReportLine| -> Vec<&str> {
        l.standards
            .iter()
            .filter(|v| v.met)
            .map(|v| v.standard)
            .collect()
    };
    assert_eq!(lines[0].subject, "default");
    assert_eq!(met(&lines[0]), ["pci-dss-4"]);
    assert_eq!(
        (lines[1].idle_s, lines[1].absolute_s),
        (Some(600), Some(28_800))
    );
    assert_eq!(
        met(&lines[1]),
        ["pci-dss-4", "nist-aal2", "nist-aal3", "owasp-low"]
    );
    assert!(lines[2].exempt && met(&lines[2]).is_empty());
    let table = report_table(&lines);
    let row = table
        .lines()
        .find(|l| l.starts_with("group Accounting"))
        .unwrap();
    let cells: Vec<_> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[1..4], ["10 min", "8 h", "met"], "{table}");
    assert!(table.contains("user uid 9"), "{table}");
    assert!(table.contains("Req. 8.2.8"), "{table}");
}

fn any_rule() -> impl Strategy<Value = Rule> {
    let limits = (
        proptest::option::of(1u64..5000),
        proptest::option::of(1u64..100_000),
    )
        .prop_filter("a rule sets something", |(i, a)| i.is_some() || a.is_some());
    prop_oneof![
        (prop::collection::vec(1i32..8, 0..5), limits.clone())
            .prop_map(|(uids, (i, a))| group("g", &uids, i, a)),
        (1i32..8, limits.clone()).prop_map(|(uid, (i, a))| user(uid, i, a, false)),
        (1i32..8).prop_map(|uid| user(uid, None, None, true)),
        (prop_oneof![Just("admin"), Just("system")], limits).prop_map(|(g, (i, a))| role(g, i, a)),
    ]
}

proptest! {
    /// Over generated rule sets: the table answers as the plain rule does,
    /// and the answer is never looser than any matching rule, and each
    /// limit is one a matching rule (or the default) set.
    #[test]
    fn strictest_wins_over_generated_rules(
        rules in prop::collection::vec(any_rule(), 0..8),
        uid in 1i32..9,
        is_admin: bool,
        is_system: bool,
        default_idle in 1i64..5000,
        default_abs in proptest::option::of(1i64..100_000),
    ) {
        let default = Policy { timeout_ms: default_idle * 1000, absolute_lifetime_ms: default_abs.map(|s| s * 1000) };
        let f = Facts { uid, is_admin, is_system };
        for r in &rules { prop_assert!(r.validate().is_ok(), "{:?}", r); }
        let got = Compiled::new(&rules).effective(default, f);
        prop_assert_eq!(got, effective(default, &rules, f));
        let matching: Vec<&Rule> = rules.iter().filter(|r| r.matches(f)).collect();
        match got {
            Effective::Exempt => prop_assert!(matching.iter().any(|r| r.exempt)),
            Effective::Timed(p) => {
                prop_assert!(!matching.iter().any(|r| r.exempt));
                for r in &matching {
                    if let Some(i) = r.idle_s { prop_assert!(p.timeout_ms <= i as i64 * 1000); }
                    if let Some(a) = r.absolute_s {
                        prop_assert!(p.absolute_lifetime_ms.is_some_and(|ms| ms <= a as i64 * 1000));
                    }
                }
                let idle_from = matching.iter().filter_map(|r| r.idle_s).map(|s| s as i64 * 1000).chain(std::iter::once(default.timeout_ms));
                prop_assert!(idle_from.clone().any(|ms| ms == p.timeout_ms));
                if matching.iter().all(|r| r.idle_s.is_none()) { prop_assert_eq!(p.timeout_ms, default.timeout_ms); }
                if matching.iter().all(|r| r.absolute_s.is_none()) { prop_assert_eq!(p.absolute_lifetime_ms, default.absolute_lifetime_ms); }
                prop_assert!(Compiled::new(&rules).strictest_idle_ms(default) <= p.timeout_ms);
            }
        }
    }
}
