//! What this node shows of its replicas: the samples behind `/metrics`, the status page, and a
//! copy's digest.

use std::sync::Arc;

use pegasus_protocol::types::Gpid;

use super::ReplicaStub;
use super::metrics::ReplicaSample;
use super::partition::Partition;
use crate::http::{HttpRequest, HttpResponse, escape_html};

impl ReplicaStub {
    /// Every replica as the metrics and the status page show it, in order.
    pub fn samples(&self) -> Vec<ReplicaSample> {
        let partitions: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .expect("partitions")
            .values()
            .cloned()
            .collect();
        let mut samples: Vec<ReplicaSample> = partitions
            .iter()
            .map(|p| ReplicaSample {
                gpid: p.gpid(),
                table: p.table_name(),
                role: p.role().name(),
                store: p.storage().map(|s| s.stats()).unwrap_or_default(),
            })
            .collect();
        samples.sort_by_key(|s| s.gpid);
        samples
    }

    /// `GET /`: this node's replicas, their roles and stores, on one page that refreshes itself.
    pub(super) fn status_page(&self) -> String {
        let samples = self.samples();
        let mut rows = String::new();
        for s in &samples {
            let _ = std::fmt::Write::write_fmt(
                &mut rows,
                format_args!(
                    "<tr class=\"replica {role}\" data-gpid=\"{gpid}\"><td>{gpid}</td><td>{table}</td><td>{role}</td><td>{sst}</td><td>{files}</td><td>{mem}</td></tr>\n",
                    gpid = s.gpid,
                    table = escape_html(&s.table),
                    role = s.role,
                    sst = s.store.sst_bytes,
                    files = s.store.sst_files,
                    mem = s.store.memtable_bytes,
                ),
            );
        }
        let lost: String = self
            .lost()
            .iter()
            .map(|(g, why)| format!("<li class=\"lost\">{g}: {}</li>\n", escape_html(why)))
            .collect();
        let count = |role: &str| samples.iter().filter(|s| s.role == role).count();
        crate::http::page(
            &format!("Replica server {}", self.options.server),
            &format!(
                "<p id=\"summary\">{} replicas: {} primary, {} secondary, {} learner, {} inactive</p>\n\
                 <table id=\"replicas\"><thead><tr><th>gpid</th><th>table</th><th>role</th><th>SST bytes</th><th>SST files</th><th>memtable bytes</th></tr></thead><tbody>\n{rows}</tbody></table>\n\
                 <h2>Lost replicas</h2><ul id=\"lost\">{lost}</ul>\n",
                samples.len(),
                count("primary"),
                count("secondary"),
                count("learner"),
                count("inactive"),
            ),
        )
    }
}

impl ReplicaStub {
    /// `GET /replica/digest?gpid=A.P`: what this node's copy of a partition holds (its applied
    /// decree, its user keys and a CRC-64 over them, [`storage::Storage::digest`]), to compare
    /// the copies of a partition: at one decree they must be equal. Reads the whole store.
    pub(super) fn digest(&self, req: &HttpRequest) -> HttpResponse {
        if !req.args_within(&["gpid"]) {
            return HttpResponse::error(400, "the only argument is `gpid`, e.g. `gpid=1.0`\n");
        }
        let gpid = req.arg("gpid").and_then(|g| {
            let (a, p) = g.split_once('.')?;
            Some(Gpid::new(a.parse().ok()?, p.parse().ok()?))
        });
        let Some(gpid) = gpid else {
            return HttpResponse::error(
                400,
                "`gpid` must be `app_id.partition_index`, e.g. `1.0`\n",
            );
        };
        let Some(store) = self.partition(gpid).and_then(|p| p.storage()) else {
            return HttpResponse::error(404, format!("no replica {gpid} on this node\n"));
        };
        match store.digest() {
            Ok(d) => HttpResponse::json(
                &crate::http::Json::obj()
                    .with("gpid", gpid.to_string())
                    .with("decree", d.decree.to_string())
                    .with("keys", d.keys.to_string())
                    .with("crc64", format!("{:016x}", d.crc64)),
            ),
            Err(e) => HttpResponse::error(500, format!("reading replica {gpid}: {e}\n")),
        }
    }
}
