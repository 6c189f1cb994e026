//! Logging: a daily file in the log dir (`PEGASUS_LOG` filters it, default `info`), and warnings
//! on stderr.

use crate::config::ServerConfig;

/// Starts logging; keep the guard until the end (it flushes the file).
pub(super) fn init_logging(server: &ServerConfig) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let prefix = server
        .roles
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join("_");
    let appender = tracing_appender::rolling::daily(&server.log_dir, format!("{prefix}.log"));
    let (file, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEGASUS_LOG")
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(file)
                .with_ansi(false),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .try_init();
    guard
}
