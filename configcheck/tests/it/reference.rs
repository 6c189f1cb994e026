use std::collections::BTreeSet;

use configcheck::rules::template_vars::{self, TokenKind};

use crate::util::{check, codes, fixtures, load};

#[test]
fn every_reference_file_parses_without_a_structural_error() {
    for entry in std::fs::read_dir(fixtures().join("reference")).expect("reference dir") {
        let path = entry.expect("entry").path();
        let name = format!(
            "reference/{}",
            path.file_name().expect("name").to_string_lossy()
        );
        let config = load(&name);
        assert!(
            config.problems().is_empty(),
            "{name}: {:?}",
            config.problems()
        );
        let structural: Vec<_> = check(&name, None)
            .into_iter()
            .filter(|f| f.rule.code.starts_with("PC01"))
            .collect();
        assert!(structural.is_empty(), "{name}: {structural:?}");
    }
}

#[test]
fn the_production_template_has_7_variables_at_12_places() {
    let findings = check("reference/pegasus-config.ini", None);
    assert_eq!(codes(&findings), ["PC001"; 12]);
    let names: BTreeSet<String> = findings
        .iter()
        .map(|f| f.source.slice(f.primary.span).to_owned())
        .collect();
    let expected = [
        "%{app.dir}",
        "%{cluster.name}",
        "%{data.dirs}",
        "%{hdfs_service_args}",
        "%{home.dir}",
        "%{meta.server.list}",
        "%{zk.server.list}",
    ];
    assert_eq!(
        names.iter().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
    // The `[pegasus.clusters]` entry has the variable as its key: both sides are found.
    let line_406: Vec<_> = findings.iter().filter(|f| f.line() == 406).collect();
    assert_eq!(line_406.len(), 2);
}

#[test]
fn the_v2_5_template_also_has_slog_dir() {
    let findings = check("reference/pegasus-config-v2.5.0-with-slog.ini", None);
    assert!(
        findings
            .iter()
            .any(|f| f.source.slice(f.primary.span) == "%{slog.dir}")
    );
    assert_eq!(findings.len(), 12);
    assert!(
        findings
            .iter()
            .all(|f| f.source.slice(f.primary.span) != "%{hdfs_service_args}")
    );
}

#[test]
fn onebox_templates_yield_only_placeholders_and_their_relative_backup_root() {
    for name in [
        "reference/pegasus-onebox-config.min.ini",
        "reference/pegasus-onebox-config.min-v2.5.0.ini",
    ] {
        let config = load(name);
        let placeholders: BTreeSet<String> = template_vars::tokens(config.source().text())
            .into_iter()
            .filter(|t| t.kind == TokenKind::Placeholder)
            .map(|t| t.name)
            .collect();
        assert!(
            placeholders.contains("META_PORT") && placeholders.contains("LOCAL_HOSTNAME"),
            "{placeholders:?}"
        );
        let findings = check(name, None);
        assert!(!findings.is_empty());
        // And its `local_service` root, relative to each instance's folder (which Pegasus's
        // onebox makes siblings; a deployment must not rely on that).
        let (placeholders, others): (Vec<_>, Vec<_>) =
            findings.iter().partition(|f| f.rule.code == "PC002");
        assert!(!placeholders.is_empty());
        assert!(
            others.len() == 1 && others[0].rule.code == "PC112",
            "{name}: {others:?}"
        );
    }
}

#[test]
fn a_filled_production_config_is_clean() {
    let host = crate::util::facts("facts/four-disks.json");
    let findings = check("good/config.ini", Some(host));
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn rendering_the_template_with_the_vars_file_gives_the_committed_good_config() {
    let template =
        std::fs::read_to_string(fixtures().join("reference/pegasus-config.ini")).expect("template");
    let vars = configcheck::render::read_vars(&fixtures().join("good/cluster.vars")).expect("vars");
    let rendered = configcheck::render::render(&template, &vars).expect("render");
    assert!(rendered.unused.is_empty());
    let good = std::fs::read_to_string(fixtures().join("good/config.ini")).expect("good");
    assert!(
        rendered.text == good,
        "good/config.ini is stale: re-render it"
    );
}

#[test]
fn docker_interfaces_are_never_candidates() {
    use configcheck::address::{self, AddressOrigin, NetworkSettings};
    let host = crate::util::facts("facts/docker0.json");
    // docker0 (by name) and br-1a2b (172.17.42.1, by address) are skipped: eth0 is the only
    // candidate, so an empty `primary_interface` is not ambiguous.
    let candidates: Vec<_> = address::candidates(&host)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(candidates, ["eth0"]);
    let chosen = address::choose(&NetworkSettings::default(), &host, &|_| None).expect("address");
    assert_eq!(chosen.origin, AddressOrigin::FirstPrivate("eth0".into()));
    let findings = check("rules/PC060/fires.ini", Some(host));
    assert!(findings.is_empty(), "{findings:?}");
}
