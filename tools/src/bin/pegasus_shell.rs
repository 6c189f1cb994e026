//! `pegasus_shell`: see [`pegasus_tools::shell`].

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use pegasus_tools::shell::Shell;

/// The Pegasus shell.
#[derive(Debug, Parser)]
#[command(name = "pegasus_shell", version)]
struct Args {
    /// Meta servers, comma-separated.
    #[arg(
        long,
        default_value = pegasus_tools::ONEBOX_METAS,
        value_delimiter = ','
    )]
    cluster: Vec<SocketAddr>,
}

/// Writes a line to standard output; false once that is closed (`| head`): the shell then
/// stops quietly, as a filter does, where `println!` would panic.
fn say(line: std::fmt::Arguments) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut shell = Shell::new(args.cluster.clone());
    let metas = args
        .cluster
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    if !say(format_args!("The cluster meta list is: {metas}")) {
        return ExitCode::SUCCESS;
    }
    let mut failed = false;
    let mut run = |line: &str, shell: &mut Shell| -> bool {
        match runtime.block_on(shell.run_line(line)) {
            None => false,
            Some(Ok(out)) => out.is_empty() || say(format_args!("{out}")),
            Some(Err(e)) => {
                failed = true;
                say(format_args!("ERROR: {e}"))
            }
        }
    };
    if std::io::stdin().is_terminal() {
        let Ok(mut editor) = rustyline::DefaultEditor::new() else {
            eprintln!("error: cannot open the terminal");
            return ExitCode::from(2);
        };
        let history = std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".pegasus_shell_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        while let Ok(line) = editor.readline(&shell.prompt()) {
            let _ = editor.add_history_entry(line.as_str());
            if !run(&line, &mut shell) {
                break;
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
    } else {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if !say(format_args!("{}{}", shell.prompt(), line)) || !run(&line, &mut shell) {
                break;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
