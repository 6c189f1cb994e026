//! `pegasus_server clean config.ini [--yes]`: a cluster reset, as the deployment guide's FAQ
//! describes it.

use std::path::PathBuf;

use configcheck::{Config, HostFacts, keys};

use super::{StartError, dns};
use crate::config::ServerConfig;

/// `pegasus_server clean config.ini [--yes]`: lists what a cluster reset removes (the guide's
/// FAQ: `[core] data_dir`, `slog_dir`, every data dir, the ZooKeeper `cluster_root`) and removes
/// it only with `--yes`.
pub fn clean(args: &[String]) -> Result<(), StartError> {
    let yes = args.iter().any(|a| a == "--yes");
    let path = args.iter().find(|a| !a.starts_with("--")).ok_or_else(|| {
        StartError::Usage("usage: pegasus_server clean <config.ini> [--yes]".into())
    })?;
    let config = Config::load(std::path::Path::new(path), path)?;
    let facts = HostFacts::collect()?;
    let server = ServerConfig::from_config(&config, &[], &facts, &dns)?;
    let mut dirs = vec![server.data_dir.clone()];
    let slog = config.text(&keys::SLOG_DIR);
    if !slog.is_empty() {
        dirs.push(PathBuf::from(slog));
    }
    dirs.extend(server.data_dirs.iter().map(|(_, p)| p.clone()));
    for d in &dirs {
        println!(
            "{} directory {}",
            if yes { "removing" } else { "would remove" },
            d.display()
        );
    }
    println!(
        "{} ZooKeeper {}{}",
        if yes { "removing" } else { "would remove" },
        server.zk_hosts,
        server.cluster_root
    );
    if !yes {
        println!("nothing removed: run again with --yes");
        return Ok(());
    }
    for d in &dirs {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|source| StartError::Dir {
                path: d.display().to_string(),
                source,
            })?;
        }
    }
    if !server.zk_hosts.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        runtime.block_on(async {
            let zk = crate::meta::zk::Zk::connect_only(&server.zk_config())
                .await
                .map_err(crate::meta::MetaError::from)?;
            let n = zk
                .delete_tree(&server.cluster_root)
                .await
                .map_err(crate::meta::MetaError::from)?;
            println!("removed {n} ZooKeeper nodes");
            Ok::<(), StartError>(())
        })?;
    }
    Ok(())
}
