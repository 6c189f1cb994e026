//! Running commands on a host with the system's OpenSSH: one multiplexed connection per host
//! (`ControlMaster`), so a verb's many steps cost one handshake; the user's `~/.ssh/config`,
//! agent and `known_hosts` apply as for any `ssh`. Every step is logged with its host.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::topology::Ssh;

/// A step that failed on a host.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// `ssh` itself could not be started.
    #[error("cannot run `ssh`: {0}")]
    Spawn(std::io::Error),
    /// The host could not be reached (ssh's own status 255).
    #[error("{host}: unreachable over SSH: {stderr}")]
    Unreachable {
        /// The host.
        host: String,
        /// What ssh said.
        stderr: String,
    },
    /// The command ran and failed.
    #[error("{host}: `{step}` failed (status {status}): {stderr}")]
    Failed {
        /// The host.
        host: String,
        /// What was run.
        step: String,
        /// Its exit status.
        status: i32,
        /// What it said.
        stderr: String,
    },
}

/// Where every remote step is recorded: the host, the step, its status.
pub struct StepLog {
    file: Option<Mutex<std::fs::File>>,
    /// Echo steps on stderr.
    pub verbose: bool,
}

impl StepLog {
    /// Appends to `path` (created with its folder), or records nothing with `None`.
    pub fn open(path: Option<&Path>, verbose: bool) -> StepLog {
        let file = path.and_then(|p| {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
                .map(Mutex::new)
        });
        StepLog { file, verbose }
    }

    fn record(&self, host: &str, step: &str, status: i32) {
        let line = format!(
            "{} {host} [{status}] {}\n",
            unix_time(),
            step.replace('\n', "; ")
        );
        if let Some(f) = &self.file {
            let _ = f
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(line.as_bytes());
        }
        if self.verbose {
            eprint!("{line}");
        }
    }
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One host, reached over SSH.
pub struct Remote<'a> {
    /// The host as the topology names it.
    pub host: String,
    ssh: &'a Ssh,
    control: PathBuf,
    log: &'a StepLog,
}

/// Quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl<'a> Remote<'a> {
    /// `host` reached with `ssh`'s settings; connections are shared through sockets in
    /// `control_dir`.
    pub fn new(host: &str, ssh: &'a Ssh, control_dir: &Path, log: &'a StepLog) -> Remote<'a> {
        Remote {
            host: host.to_owned(),
            ssh,
            control: control_dir.join("%C"),
            log,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
            .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])
            .args(["-o", "ControlMaster=auto", "-o", "ControlPersist=60"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()))
            .arg("-o")
            .arg(format!(
                "StrictHostKeyChecking={}",
                self.ssh.host_key_checking.get_ref()
            ))
            .arg("-p")
            .arg(self.ssh.port.to_string())
            .arg("-l")
            .arg(&self.ssh.user);
        if let Some(key) = &self.ssh.identity_file {
            cmd.arg("-i").arg(expand_home(key));
        }
        if let Some(known) = &self.ssh.known_hosts {
            cmd.arg("-o").arg(format!(
                "UserKnownHostsFile={}",
                expand_home(known).display()
            ));
        }
        cmd.arg(&self.host);
        cmd
    }

    /// Runs `script` (bash) on the host with `input` on its stdin; its stdout when it exits 0.
    pub fn run_with(&self, script: &str, input: &[u8]) -> Result<String, SshError> {
        let mut cmd = self.command();
        // Root runs it as is; another user through sudo (passwordless, as for any deploy tool).
        let wrapped = if self.ssh.user == "root" {
            format!("bash -c {}", quote(script))
        } else {
            format!("sudo -n bash -c {}", quote(script))
        };
        cmd.arg(wrapped)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(SshError::Spawn)?;
        let mut stdin = child.stdin.take().expect("piped");
        let feed = std::thread::scope(|s| {
            let writer = s.spawn(move || {
                let r = stdin.write_all(input);
                drop(stdin);
                r
            });
            let out = child.wait_with_output();
            let _ = writer.join();
            out
        });
        let out = feed.map_err(SshError::Spawn)?;
        let status = out.status.code().unwrap_or(-1);
        self.log.record(&self.host, script, status);
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        match status {
            0 => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            255 => Err(SshError::Unreachable {
                host: self.host.clone(),
                stderr,
            }),
            status => Err(SshError::Failed {
                host: self.host.clone(),
                step: first_line(script),
                status,
                stderr: if stderr.is_empty() {
                    String::from_utf8_lossy(&out.stdout).trim().to_owned()
                } else {
                    stderr
                },
            }),
        }
    }

    /// Runs `script` (bash) on the host; its stdout when it exits 0.
    pub fn run(&self, script: &str) -> Result<String, SshError> {
        self.run_with(script, &[])
    }

    /// Writes `bytes` to `path` on the host (atomically: a temporary file renamed), with `mode`;
    /// at the lowest priority ([`GENTLY`]), as the host may be serving.
    pub fn put(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), SshError> {
        let tmp = format!("{path}.tmp.{}", std::process::id());
        self.run_with(
            &format!(
                "set -e; mkdir -p \"$(dirname {p})\"; {GENTLY} cat > {t}; chmod {mode:o} {t}; mv -f {t} {p}",
                p = quote(path),
                t = quote(&tmp),
            ),
            bytes,
        )
        .map(drop)
    }

    /// The sha256 of `path` on the host, if it exists ([`GENTLY`]).
    pub fn sha256(&self, path: &str) -> Result<Option<String>, SshError> {
        let out = self.run(&format!(
            "if [ -f {p} ]; then {GENTLY} sha256sum {p}; fi",
            p = quote(path)
        ))?;
        Ok(out.split_whitespace().next().map(str::to_owned))
    }

    /// The text of `path` on the host, if it exists.
    pub fn read(&self, path: &str) -> Result<Option<String>, SshError> {
        let out = self.run(&format!(
            "if [ -f {p} ]; then echo y; cat {p}; else echo n; fi",
            p = quote(path)
        ))?;
        Ok(out.strip_prefix("y\n").map(str::to_owned))
    }
}

/// The prefix for a remote step that is heavy but not urgent (copying, checksumming and
/// unpacking a package): the lowest CPU and I/O priority, so a host that serves meanwhile (an
/// upgrade's hosts all do) answers its clients first. `ionice -t`: where the I/O class cannot
/// be set, it runs anyway.
pub const GENTLY: &str = "nice -n 19 ionice -c 3 -t";

fn first_line(script: &str) -> String {
    let line = script.lines().next().unwrap_or_default();
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// `~/x` → `$HOME/x`.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// The sha256 of local file `path`, with the same `sha256sum` the hosts use.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::other("sha256sum printed nothing"))
}
