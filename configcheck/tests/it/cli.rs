//! The binary as users run it. Snapshots hold the exit code, stdout and stderr.

use std::io::Read;
use std::process::{Command, Stdio};

use insta_cmd::{assert_cmd_snapshot, get_cargo_bin};

use crate::util::fixtures;

/// `configcheck` run from the fixtures folder, without colour.
fn configcheck() -> Command {
    let mut cmd = Command::new(get_cargo_bin("configcheck"));
    cmd.current_dir(fixtures())
        .env("NO_COLOR", "1")
        .env_remove("CONFIGCHECK_FORMAT");
    cmd
}

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots/cli");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[test]
fn every_format_on_a_finding_with_a_related_label() {
    settings().bind(|| {
        for format in ["human", "concise", "json", "sarif", "github"] {
            assert_cmd_snapshot!(
                format!("format-{format}"),
                configcheck().args([
                    "check",
                    "--offline",
                    "--format",
                    format,
                    "rules/PC022/fires.ini"
                ])
            );
        }
    });
}

#[test]
fn the_production_template_exits_1_with_every_variable() {
    settings().bind(|| {
        assert_cmd_snapshot!(
            "production-template",
            configcheck().args([
                "--format",
                "concise",
                "--offline",
                "reference/pegasus-config.ini"
            ])
        );
    });
}

#[test]
fn a_correct_config_exits_0() {
    settings().bind(|| {
        assert_cmd_snapshot!(
            "good-config",
            configcheck().args([
                "check",
                "--facts",
                "facts/four-disks.json",
                "good/config.ini"
            ])
        );
    });
}

#[test]
fn warnings_exit_0_unless_denied_and_findings_exit_0_with_exit_zero() {
    let status = |args: &[&str]| {
        configcheck()
            .args(args)
            .output()
            .expect("run")
            .status
            .code()
    };
    let warn_only = ["check", "--offline", "-q", "rules/PC025/fires.ini"];
    assert_eq!(status(&warn_only), Some(0));
    assert_eq!(
        status(&[&warn_only[..], &["--deny-warnings"]].concat()),
        Some(1)
    );
    let errors = ["check", "--offline", "-q", "rules/PC001/fires.ini"];
    assert_eq!(status(&errors), Some(1));
    assert_eq!(status(&[&errors[..], &["--exit-zero"]].concat()), Some(0));
    assert_eq!(
        status(&[&errors[..], &["--ignore", "PC001"]].concat()),
        Some(0)
    );
    assert_eq!(
        status(&[&errors[..], &["--ignore", "unreplaced-template-variable"]].concat()),
        Some(0)
    );
}

#[test]
fn a_missing_file_exits_2_after_reporting_the_others() {
    settings().bind(|| {
        assert_cmd_snapshot!(
            "missing-file",
            configcheck().args([
                "--offline",
                "--format",
                "concise",
                "no-such.ini",
                "rules/PC025/fires.ini"
            ])
        );
    });
}

#[test]
fn usage_errors_exit_2() {
    settings().bind(|| {
        assert_cmd_snapshot!(
            "unknown-ignore",
            configcheck().args(["check", "--ignore", "PC999", "good/config.ini"])
        );
        assert_cmd_snapshot!("unknown-rule", configcheck().args(["explain", "PC999"]));
    });
    let out = configcheck()
        .args(["check", "--no-such-flag", "x.ini"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = configcheck()
        .args(["check", "--facts", "no-such.json", "good/config.ini"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn standard_input_with_a_display_name() {
    settings().bind(|| {
        let text = std::fs::read(fixtures().join("rules/PC020/fires.ini")).expect("fixture");
        assert_cmd_snapshot!(
            "stdin",
            configcheck()
                .args([
                    "check",
                    "--offline",
                    "--format",
                    "concise",
                    "--stdin-filename",
                    "meta1/config.ini",
                    "-"
                ])
                .pass_stdin(text)
        );
    });
}

#[test]
fn a_folder_is_a_cluster() {
    settings().bind(|| {
        assert_cmd_snapshot!(
            "cluster-folder",
            configcheck().args(["--offline", "--format", "concise", "rules/PC090/fires"])
        );
    });
}

#[test]
fn rules_and_explain() {
    settings().bind(|| {
        assert_cmd_snapshot!("rules", configcheck().arg("rules"));
        assert_cmd_snapshot!("explain", configcheck().args(["explain", "pc001"]));
        assert_cmd_snapshot!("keys", configcheck().arg("keys"));
        assert_cmd_snapshot!(
            "explain-key",
            configcheck().args(["explain", "replication.fd_lease_seconds"])
        );
        assert_cmd_snapshot!(
            "explain-pegasus-key",
            configcheck().args(["explain", "[replication] fd_disabled"])
        );
    });
}

#[test]
fn bad_input_is_refused_with_exit_2_and_no_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.ini");
    std::fs::write(
        &garbage,
        (0..4096u32)
            .map(|i| (i * 7919 % 256) as u8)
            .collect::<Vec<_>>(),
    )
    .expect("write");
    let latin1 = dir.path().join("latin1.ini");
    std::fs::write(&latin1, b"[core]\ndata_dir = /home/caf\xe9\n").expect("write");
    let huge = dir.path().join("huge.ini");
    let file = std::fs::File::create(&huge).expect("create");
    file.set_len(100 * 1024 * 1024).expect("sparse 100 MB file");
    for (path, expected) in [
        (&garbage, "is a binary file"),
        (
            &latin1,
            "is not UTF-8 text (invalid byte at line 2, column 21)",
        ),
        (&huge, "is larger than 16777216 bytes"),
        (&dir.path().to_path_buf().join("missing.ini"), "cannot read"),
    ] {
        let out = configcheck().arg("check").arg(path).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
        assert!(stderr.contains(expected), "{}: {stderr}", path.display());
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_folder_of_thousands_of_files_with_one_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read_to_string(fixtures().join("rules/PC090/passes/replica1.ini"))
        .expect("fixture");
    for i in 0..3000 {
        std::fs::write(dir.path().join(format!("node{i:04}.ini")), &good).expect("write");
    }
    std::fs::write(dir.path().join("node9999.ini"), b"\xff\xfe").expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a config").expect("write");
    let out = configcheck()
        .args(["check", "--format", "json"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["summary"]["files"], 3000);
    assert_eq!(doc["summary"]["unreadable"], 1);
    assert_eq!(doc["summary"]["errors"], 0);
}

#[test]
fn a_closed_stdout_exits_0() {
    let mut cmd = configcheck();
    cmd.args(["check", "--offline"]);
    for _ in 0..40 {
        cmd.arg("reference/pegasus-config.ini");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 16];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("read");
    // The pipe's read end is dropped here, as `| head -c 16` would.
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn render_writes_only_a_complete_and_clean_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("config.ini");
    let render = |extra: &[&str]| {
        configcheck()
            .args([
                "render",
                "reference/pegasus-config.ini",
                "--vars",
                "good/cluster.vars",
                "-o",
            ])
            .arg(&out)
            .args(extra)
            .output()
            .expect("run")
    };
    // A missing variable: refused, nothing written, every missing name listed.
    let missing = configcheck()
        .args([
            "render",
            "reference/pegasus-config.ini",
            "--set",
            "cluster.name=prod",
            "-o",
        ])
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no value for `app.dir`, `data.dirs`, `hdfs_service_args`, `home.dir`, `meta.server.list`, `zk.server.list`"), "{stderr}");
    assert!(!out.exists());
    // Values that make an invalid config: refused after the check, nothing written.
    let bad = render(&["--set", "meta.server.list=meta1:34601,meta2:34601"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("PC020"));
    assert!(!out.exists());
    // Complete and clean: written, and identical to the committed good config.
    let ok = render(&["--offline"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let written = std::fs::read_to_string(&out).expect("written");
    assert_eq!(
        written,
        std::fs::read_to_string(fixtures().join("good/config.ini")).expect("good")
    );
}
