//! Each rule has `tests/fixtures/rules/<CODE>/`: `fires.ini` must produce the rule, `passes.ini`
//! (the same file, fixed) must not. Host rules read `facts.json` beside them; cluster rules have
//! `fires/` and `passes/` folders of node configs. The human rendering (no colour, width 80) and
//! the JSON of every `fires` case are snapshots.

use configcheck::report::{Reporter, Style, Summary, human::Human, json::Json};
use configcheck::rules::{self, Scope, cluster};
use configcheck::{Config, Finding};

use crate::util::{codes, facts, fixtures, load};

fn rule_dir(code: &str) -> String {
    format!("rules/{code}")
}

/// Runs the checks of one fixture case, the way `configcheck check` would.
fn run(code: &str, case: &str) -> Vec<Finding> {
    let rule = rules::find(code).expect("rule");
    let dir = rule_dir(code);
    if rule.scope == Scope::Cluster {
        let mut paths: Vec<_> = std::fs::read_dir(fixtures().join(&dir).join(case))
            .expect("case dir")
            .map(|e| e.expect("entry").path())
            .collect();
        paths.sort();
        let configs: Vec<Config> = paths
            .iter()
            .map(|p| {
                load(&format!(
                    "{dir}/{case}/{}",
                    p.file_name().expect("name").to_string_lossy()
                ))
            })
            .collect();
        let nodes: Vec<_> = configs.iter().map(cluster::NodeSummary::of).collect();
        return cluster::check(&nodes)
            .into_iter()
            .map(|f| {
                let node = f.node;
                f.into_finding(configs[node].source())
            })
            .collect();
    }
    let facts_path = fixtures().join(&dir).join("facts.json");
    let host = facts_path
        .exists()
        .then(|| facts(&format!("{dir}/facts.json")));
    crate::util::check(&format!("{dir}/{case}.ini"), host)
}

fn human(findings: &[Finding]) -> String {
    let human = Human::new(Style {
        color: false,
        width: 80,
    });
    findings
        .iter()
        .map(|f| human.render(f))
        .collect::<Vec<_>>()
        .join("\n")
}

fn json(findings: &[Finding]) -> String {
    let mut json = Json::default();
    let mut out = Vec::new();
    let name = findings.first().map_or("", |f| f.source.name());
    json.file(&mut out, name, findings).expect("json");
    let mut summary = Summary {
        files: 1,
        ..Summary::default()
    };
    summary.count(findings);
    json.finish(&mut out, &summary).expect("json");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn every_rule_has_a_fixture_folder() {
    for rule in rules::ALL {
        assert!(
            fixtures().join(rule_dir(rule.code)).is_dir(),
            "no fixtures for {}",
            rule.code
        );
    }
}

#[test]
fn each_rule_fires_on_its_fixture_and_not_on_the_fixed_one() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots/rules");
    settings.bind(|| {
        for rule in rules::ALL {
            let fires = run(rule.code, "fires");
            assert!(
                codes(&fires).contains(&rule.code),
                "{} does not fire: {:?}",
                rule.code,
                fires
            );
            let passes = run(rule.code, "passes");
            assert!(
                !codes(&passes).contains(&rule.code),
                "{} fires on passes: {:?}",
                rule.code,
                passes
            );
            insta::assert_snapshot!(format!("{}-human", rule.code), human(&fires));
            insta::assert_snapshot!(format!("{}-json", rule.code), json(&fires));
        }
    });
}
