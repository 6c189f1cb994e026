//! The meta's HTTP: Pegasus's API (`/meta/cluster`, `/meta/nodes`, `/meta/apps`, `/meta/app`,
//! with its JSON shapes and argument rules: see the README), `/metrics`, and the cluster's status
//! page at `/`. A follower answers the leader's paths with a redirect to the leader (307), as
//! Pegasus's metas do; `/metrics`, `/version` and `/recentStartTime` every meta answers itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pegasus_protocol::health::{Health, PartitionHealth};
use pegasus_protocol::types::meta_function_level;

use super::MetaServer;
use super::metrics::MetaSample;
use super::state::{self, App};
use crate::http::{self, HttpRequest, HttpResponse, Json, content, escape_html};

/// A node as the API and the page show it.
struct NodeRow {
    addr: SocketAddrV4,
    alive: bool,
    primaries: usize,
    secondaries: usize,
}

impl MetaServer {
    /// A table's partitions counted as Pegasus's `/meta/apps?detail` counts them, with the
    /// configured `mutation_2pc_min_replica_count`.
    fn health_of(&self, app: &App) -> Health {
        Health::count(
            app.partitions
                .iter()
                .map(|p| p.health(self.options.min_write_members)),
        )
    }

    /// Answers an HTTP request.
    pub(super) async fn serve_http(self: Arc<Self>, req: HttpRequest) -> HttpResponse {
        let leader_only = |allowed: &[&str]| -> Option<HttpResponse> {
            // Arguments are checked before the redirect, as Pegasus does.
            if !req.args_within(allowed) {
                return Some(HttpResponse::error(400, ""));
            }
            self.redirect(&req)
        };
        match req.path.as_str() {
            "/metrics" => HttpResponse::ok(crate::metrics::CONTENT_TYPE, self.metrics_text().await),
            "/" => match self.redirect(&req) {
                Some(r) => r,
                None => HttpResponse::ok(content::HTML, self.status_page().await),
            },
            "/meta/cluster" => match self.redirect(&req) {
                Some(r) => r,
                None => HttpResponse::json(&self.cluster_json().await),
            },
            "/meta/nodes" => match leader_only(&["detail"]) {
                Some(r) => r,
                None => HttpResponse::json(&self.nodes_json(req.arg("detail").is_some()).await),
            },
            "/meta/apps" => match leader_only(&["detail"]) {
                Some(r) => r,
                None => HttpResponse::json(&self.apps_json(req.arg("detail").is_some())),
            },
            "/meta/app" => match leader_only(&["name", "detail"]) {
                Some(r) => r,
                None => self.app_json(req.arg("name").unwrap_or(""), req.arg("detail").is_some()),
            },
            _ => http::builtin(&req, self.started)
                .unwrap_or_else(|| HttpResponse::not_found(&req.path)),
        }
    }

    /// `None` on the leader; on a follower, a redirect to the leader (503 while none is known).
    fn redirect(&self, req: &HttpRequest) -> Option<HttpResponse> {
        if self.is_leader() {
            return None;
        }
        Some(match *self.leader_addr.lock().expect("leader") {
            Some(leader) => HttpResponse::redirect(format!("http://{leader}{}", req.target())),
            None => HttpResponse::error(503, "no meta leader is known yet\n"),
        })
    }

    async fn metrics_text(&self) -> String {
        let view = self.view();
        let (alive, dead) = if self.is_leader() {
            let state = self.lock().await;
            let alive = state.nodes.values().filter(|n| n.alive).count();
            (alive, state.nodes.len() - alive)
        } else {
            (0, 0)
        };
        let leader = self.is_leader();
        self.metrics.encode(
            &MetaSample {
                leader,
                alive,
                dead,
                apps: leader.then_some(&*view),
            },
            self.options.min_write_members,
        )
    }

    async fn node_rows(&self) -> Vec<NodeRow> {
        let state = self.lock().await;
        let mut rows: Vec<NodeRow> = state
            .nodes
            .iter()
            .map(|(addr, n)| {
                let (primaries, secondaries) = state.role_counts(addr);
                NodeRow {
                    addr: *addr,
                    alive: n.alive,
                    primaries,
                    secondaries,
                }
            })
            .collect();
        rows.sort_by_key(|r| r.addr);
        rows
    }

    /// `/meta/cluster`: `cluster_info`'s keys, as Pegasus's HTTP API gives them (without the
    /// cluster name, which the RPC adds).
    async fn cluster_json(&self) -> Json {
        let info = self.cluster_info().await;
        let mut j = Json::obj();
        for (k, v) in info.keys.into_iter().zip(info.values) {
            if k != "cluster_name" {
                j.push(k, v);
            }
        }
        j
    }

    /// `/meta/nodes[?detail]`.
    async fn nodes_json(&self, detail: bool) -> Json {
        let rows = self.node_rows().await;
        let mut details = Json::obj();
        // Alive nodes first, then the dead, each in address order (Pegasus's map keeps that).
        for r in rows
            .iter()
            .filter(|r| r.alive)
            .chain(rows.iter().filter(|r| !r.alive))
        {
            let mut row = Json::obj()
                .with("address", r.addr.to_string())
                .with("status", if r.alive { "ALIVE" } else { "UNALIVE" });
            if detail {
                row = row
                    .with("replica_count", r.primaries + r.secondaries)
                    .with("primary_count", r.primaries)
                    .with("secondary_count", r.secondaries);
            }
            details.push(r.addr.to_string(), row);
        }
        let alive = rows.iter().filter(|r| r.alive).count();
        Json::obj().with("details", details).with(
            "summary",
            Json::obj()
                .with("total_node_count", rows.len())
                .with("alive_node_count", alive)
                .with("unalive_node_count", rows.len() - alive),
        )
    }

    /// `/meta/apps[?detail]`: the available tables.
    fn apps_json(&self, detail: bool) -> Json {
        let view = self.view();
        let apps: Vec<&App> = view.values().filter(|a| a.info.available()).collect();
        let mut general = Json::obj();
        let mut healthy = Json::obj();
        let (mut fully_apps, mut write_apps, mut read_apps) = (0, 0, 0);
        for app in &apps {
            let i = &app.info;
            let created = if i.create_second == 0 {
                "-".to_owned()
            } else {
                http::date_time(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(i.create_second.max(0) as u64),
                    true,
                )
            };
            general.push(
                i.app_id.to_string(),
                Json::obj()
                    .with("app_id", i.app_id)
                    .with("status", "AVAILABLE")
                    .with("app_name", i.app_name.as_str())
                    .with("app_type", i.app_type.as_str())
                    .with("partition_count", i.partition_count)
                    .with("replica_count", i.max_replica_count)
                    .with("is_stateful", i.is_stateful)
                    .with("create_time", created)
                    .with("drop_time", "-")
                    .with("drop_expire", "-")
                    .with("envs_count", i.envs.len()),
            );
            let h = self.health_of(app);
            fully_apps += usize::from(h.unhealthy == 0);
            write_apps += usize::from(h.write_unhealthy > 0);
            read_apps += usize::from(h.read_unhealthy > 0);
            healthy.push(
                i.app_id.to_string(),
                Json::obj()
                    .with("app_id", i.app_id)
                    .with("app_name", i.app_name.as_str())
                    .with("partition_count", i.partition_count)
                    .with("fully_healthy", h.fully_healthy)
                    .with("unhealthy", h.unhealthy)
                    .with("write_unhealthy", h.write_unhealthy)
                    .with("read_unhealthy", h.read_unhealthy),
            );
        }
        let mut out = Json::obj().with("general_info", general);
        let mut summary = Json::obj().with("total_app_count", apps.len());
        if detail && !apps.is_empty() {
            out.push("healthy_info", healthy);
            summary = summary
                .with("fully_healthy_app_count", fully_apps)
                .with("unhealthy_app_count", apps.len() - fully_apps)
                .with("write_unhealthy_app_count", write_apps)
                .with("read_unhealthy_app_count", read_apps);
        }
        out.with("summary", summary)
    }

    /// `/meta/app?name=X[&detail]`.
    fn app_json(&self, name: &str, detail: bool) -> HttpResponse {
        let view = self.view();
        let Some(app) = state::app_named(&view, name) else {
            return HttpResponse::error(404, format!("table not found: \"{name}\""));
        };
        let max = app.partitions.first().map_or(0, |p| p.max_replica_count);
        let mut out = Json::obj().with(
            "general",
            Json::obj()
                .with("app_name", app.info.app_name.as_str())
                .with("app_id", app.info.app_id)
                .with("partition_count", app.info.partition_count)
                .with("max_replica_count", max),
        );
        if !detail {
            return HttpResponse::json(&out);
        }
        let mut replicas = Json::obj();
        let mut nodes: BTreeMap<SocketAddrV4, (usize, usize)> = BTreeMap::new();
        for (i, p) in app.partitions.iter().enumerate() {
            let primary = p.primary_addr();
            let secondaries = p.secondary_addrs();
            if let Some(a) = primary {
                nodes.entry(a).or_default().0 += 1;
            }
            for s in &secondaries {
                nodes.entry(*s).or_default().1 += 1;
            }
            let listed: Vec<String> = secondaries.iter().map(|s| s.to_string()).collect();
            replicas.push(
                i.to_string(),
                Json::obj()
                    .with("pidx", i)
                    .with("ballot", p.ballot)
                    .with(
                        "replica_count",
                        format!(
                            "{}/{}",
                            usize::from(primary.is_some()) + secondaries.len(),
                            p.max_replica_count
                        ),
                    )
                    .with("primary", primary.map_or("-".to_owned(), |a| a.to_string()))
                    .with("secondaries", format!("[{}]", listed.join(","))),
            );
        }
        let mut node_rows = Json::obj();
        let (mut primaries, mut secondaries) = (0, 0);
        for (addr, (p, s)) in &nodes {
            primaries += p;
            secondaries += s;
            node_rows.push(
                addr.to_string(),
                Json::obj()
                    .with("node", addr.to_string())
                    .with("primary", *p)
                    .with("secondary", *s)
                    .with("total", p + s),
            );
        }
        node_rows.push(
            "total",
            Json::obj()
                .with("node", "total")
                .with("primary", primaries)
                .with("secondary", secondaries)
                .with("total", primaries + secondaries),
        );
        let h = self.health_of(app);
        out = out
            .with("replicas", replicas)
            .with("nodes", node_rows)
            .with(
                "healthy",
                Json::obj()
                    .with("fully_healthy_partition_count", h.fully_healthy)
                    .with("unhealthy_partition_count", h.unhealthy)
                    .with("write_unhealthy_partition_count", h.write_unhealthy)
                    .with("read_unhealthy_partition_count", h.read_unhealthy),
            );
        HttpResponse::json(&out)
    }

    /// What the collector found in its last round, if one reported.
    fn availability_section(&self) -> String {
        let report = self.availability.lock().expect("availability").clone();
        let Some((at, r)) = report else {
            return "<p id=\"availability\">Availability: no collector reports to this meta.</p>\n"
                .to_owned();
        };
        let passed = r.partition_count - r.unavailable.len() as i32;
        let failing = if r.unavailable.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = r.unavailable.iter().map(|p| p.to_string()).collect();
            format!("; failing: partitions {}", list.join(", "))
        };
        format!(
            "<h2>Availability</h2>\n<p id=\"availability\" data-passed=\"{passed}\" data-partitions=\"{}\">The collector ({}) wrote and read back every partition of <b>{}</b>: {passed} of {} passed{failing} ({} s ago).</p>\n",
            r.partition_count,
            r.collector,
            escape_html(&r.app_name),
            r.partition_count,
            at.elapsed().as_secs()
        )
    }

    /// `/`: the cluster at a glance.
    /// Backups in progress: each with its table and the partitions whose part is whole.
    fn backups_section(&self) -> String {
        let running = self.backups_running();
        if running.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "<h2>Backups in progress</h2>\n<table id=\"backups\"><thead><tr><th>backup</th><th>table</th><th>partitions uploaded</th></tr></thead><tbody>\n",
        );
        for (id, table, done, all) in running {
            let _ = writeln!(
                out,
                "<tr><td>{id}</td><td>{}</td><td>{done} of {all}</td></tr>",
                escape_html(&table)
            );
        }
        out.push_str("</tbody></table>\n");
        out
    }

    async fn status_page(&self) -> String {
        let rows = self.node_rows().await;
        let view = self.view();
        let leader = self
            .leader_addr
            .lock()
            .expect("leader")
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        let mut body = String::new();
        let _ = writeln!(
            body,
            "<p>Cluster <b id=\"cluster\">{}</b>; meta leader <b id=\"leader\">{}</b>; metas {}; meta level {}.</p>",
            escape_html(&self.options.cluster_name),
            leader,
            escape_html(
                &self
                    .options
                    .meta_servers
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            meta_function_level::name(self.level()),
        );
        let alive = rows.iter().filter(|r| r.alive).count();
        let _ = write!(
            body,
            "<h2>Replica servers: {alive} alive, {} dead</h2>\n<table id=\"nodes\"><thead><tr><th>node</th><th>state</th><th>replicas</th><th>primaries</th><th>secondaries</th></tr></thead><tbody>\n",
            rows.len() - alive
        );
        for r in &rows {
            let state = if r.alive { "alive" } else { "dead" };
            let _ = writeln!(
                body,
                "<tr class=\"node {state}\" data-node=\"{a}\"><td><a href=\"http://{a}/\">{a}</a></td><td class=\"{state}\">{state}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.primaries + r.secondaries,
                r.primaries,
                r.secondaries,
                a = r.addr,
            );
        }
        body.push_str("</tbody></table>\n");
        let apps: Vec<&App> = view.values().filter(|a| a.info.available()).collect();
        let _ = write!(
            body,
            "<h2>Tables: {}</h2>\n<table id=\"tables\"><thead><tr><th>table</th><th>id</th><th>partitions</th><th>replicas</th><th>fully healthy</th><th>write unhealthy</th><th>read unhealthy</th></tr></thead><tbody>\n",
            apps.len()
        );
        let mut maps = String::new();
        for app in &apps {
            let i = &app.info;
            let h = self.health_of(app);
            let name = escape_html(&i.app_name);
            let _ = writeln!(
                body,
                "<tr class=\"table\" data-table=\"{name}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i.app_id,
                i.partition_count,
                i.max_replica_count,
                h.fully_healthy,
                h.write_unhealthy,
                h.read_unhealthy
            );
            let _ = write!(
                maps,
                "<h3>{name}</h3>\n<div class=\"map\" data-table=\"{name}\">"
            );
            for (pidx, p) in app.partitions.iter().enumerate() {
                let health = p.health(self.options.min_write_members);
                let class = match health {
                    PartitionHealth::Dead => "dead_partition",
                    h => h.name(),
                };
                let title = format!(
                    "{}.{pidx} ballot {}: {}; primary {}; secondaries [{}]",
                    i.app_id,
                    p.ballot,
                    health.name(),
                    if p.primary.is_empty() {
                        "-"
                    } else {
                        &p.primary
                    },
                    p.secondaries.join(", ")
                );
                let _ = write!(
                    maps,
                    "<div class=\"cell {class}\" data-pidx=\"{pidx}\" data-health=\"{}\" title=\"{}\">{pidx}</div>",
                    health.name(),
                    escape_html(&title)
                );
            }
            maps.push_str("</div>\n");
        }
        body.push_str("</tbody></table>\n");
        body.push_str(&self.availability_section());
        body.push_str(&self.backups_section());
        body.push_str(
            "<h2>Partition maps</h2>\n<p class=\"legend\"><span class=\"cell healthy\"></span> healthy \
             <span class=\"cell writable_ill\"></span> writable, copies short \
             <span class=\"cell unwritable\"></span> unwritable <span class=\"cell unreadable\"></span> \
             no primary <span class=\"cell dead_partition\"></span> no member</p>\n",
        );
        body.push_str(&maps);
        body.push_str(
            "<p>API: <a href=\"/meta/cluster\">/meta/cluster</a>, <a href=\"/meta/nodes?detail\">/meta/nodes</a>, \
             <a href=\"/meta/apps?detail\">/meta/apps</a>, <a href=\"/metrics\">/metrics</a>, <a href=\"/version\">/version</a></p>\n",
        );
        http::page(
            &format!("Pegasus cluster {}", self.options.cluster_name),
            &body,
        )
    }
}
