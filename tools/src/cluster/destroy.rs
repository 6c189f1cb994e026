//! `pegasus_cluster destroy`: the guide's "cluster cleaning" on every host — every instance
//! stopped, its units, folders and data directories removed — then the cluster root in
//! ZooKeeper. Releases are removed with the deploy dir when no other cluster uses it.

use super::fleet::Fleet;
use super::layout::Layout;
use super::ssh::{SshError, quote};
use super::topology::Instance;

/// Destroys the cluster on every host; what each host removed.
pub fn destroy(fleet: &Fleet) -> Vec<(String, Result<Vec<String>, SshError>)> {
    let topology = &fleet.topology;
    fleet.each_host(|r| {
        let instances: Vec<&Instance> = topology.on_host(&r.host).collect();
        // Stopped in reverse: the servers before the ZooKeeper members they use.
        let units: Vec<String> = instances
            .iter()
            .rev()
            .map(|i| Layout::unit(topology, i))
            .collect();
        let unit_paths: Vec<String> = instances
            .iter()
            .map(|i| quote(&Layout::unit_path(topology, i)))
            .collect();
        let mut dirs: Vec<String> = instances
            .iter()
            .flat_map(|i| Layout::writable(topology, i))
            .collect();
        dirs.push(Layout::cluster_dir(topology));
        let deploy = quote(&topology.deploy_dir);
        let out = r.run(&format!(
            "set -e\n\
             for u in {units}; do systemctl disable --now \"$u\" >/dev/null 2>&1 || true; echo \"stopped $u\"; done\n\
             for f in {unit_paths}; do if [ -e \"$f\" ]; then rm -f \"$f\"; echo \"removed $f\"; fi; done\n\
             systemctl daemon-reload\n\
             systemctl reset-failed >/dev/null 2>&1 || true\n\
             for d in {dirs}; do if [ -e \"$d\" ]; then rm -rf \"$d\"; echo \"removed $d\"; fi; rmdir \"$(dirname \"$d\")\" 2>/dev/null || true; done\n\
             rm -rf /tmp/pegasus_cluster_check\n\
             if [ -d {deploy} ] && [ -z \"$(ls -A {deploy} | grep -v -x -e releases -e packages)\" ]; then \
               rm -rf {deploy}; echo \"removed {deploy}\"; fi\n",
            units = units.join(" "),
            unit_paths = unit_paths.join(" "),
            dirs = dirs.iter().map(|d| quote(d)).collect::<Vec<_>>().join(" "),
        ))?;
        Ok(out.lines().map(str::to_owned).collect())
    })
}
