//! A replica in process behind real sockets, with a routing service that answers `query_cfg`
//! for it: what a meta says, without ZooKeeper.
#![allow(missing_docs)]

use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;

use pegasus_client::{Client, ClientOptions};
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::Request;
use pegasus_protocol::types::*;
use pegasus_server::net::{self, Limits, Reply, Service};
use pegasus_server::replica::ReplicaStub;
use pegasus_server::replica::dirs::DataDirs;
use pegasus_server::replica::partition::PartitionOptions;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Answers `RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX` for one table whose partitions all live on
/// one replica: what a meta server says, without ZooKeeper.
pub struct Routing {
    pub table: String,
    pub app_id: i32,
    pub partition_count: i32,
    pub replica: SocketAddrV4,
}

impl Service for Routing {
    fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>) {
        for (request, reply) in batch {
            if request.message.name != rpc::QUERY_CONFIG {
                reply.error(ErrorCode::HandlerNotFound);
                continue;
            }
            let Ok(query) = request.args::<QueryCfgRequest>() else {
                reply.error(ErrorCode::InvalidParameters);
                continue;
            };
            let response = if query.app_name == self.table {
                QueryCfgResponse {
                    err: ErrorName("ERR_OK".into()),
                    app_id: self.app_id,
                    partition_count: self.partition_count,
                    is_stateful: true,
                    partitions: (0..self.partition_count)
                        .map(|p| PartitionConfiguration {
                            pid: Gpid::new(self.app_id, p),
                            ballot: 1,
                            max_replica_count: 1,
                            primary: RpcAddress::new(self.replica),
                            ..Default::default()
                        })
                        .collect(),
                }
            } else {
                QueryCfgResponse {
                    err: ErrorName("ERR_OBJECT_NOT_FOUND".into()),
                    ..Default::default()
                }
            };
            reply.send(ErrorCode::Ok, Some(&response));
        }
    }
}

/// A replica and a routing service on loopback, each on its own port.
pub struct Harness {
    pub stub: Arc<ReplicaStub>,
    pub replica: SocketAddrV4,
    pub meta: SocketAddrV4,
    /// Replicas the stub found on disk when it opened.
    pub loaded: usize,
    stops: Vec<oneshot::Sender<()>>,
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("loopback is IPv4 here"),
    }
}

/// Serves `service` on 127.0.0.1 (`port` 0: any free port) until the returned sender fires.
pub async fn serve<S: Service>(service: Arc<S>, port: u16) -> (SocketAddrV4, oneshot::Sender<()>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let addr = v4(listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(net::serve(
        listener,
        service,
        Limits::default(),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

impl Harness {
    /// Opens (or reopens) a replica under `root` holding `partitions` partitions of table
    /// `temp` (app 1), and starts both services.
    pub async fn start(root: &Path, partitions: i32) -> Harness {
        Self::start_on(root, partitions, 0, 0).await
    }

    /// As [`Harness::start`], on fixed ports (0: any).
    pub async fn start_on(
        root: &Path,
        partitions: i32,
        meta_port: u16,
        replica_port: u16,
    ) -> Harness {
        Self::start_with(
            root,
            partitions,
            (meta_port, replica_port),
            PartitionOptions::default(),
        )
        .await
    }

    /// As [`Harness::start_on`], with partitions opened with `options`.
    pub async fn start_with(
        root: &Path,
        partitions: i32,
        (meta_port, replica_port): (u16, u16),
        options: PartitionOptions,
    ) -> Harness {
        let dirs = DataDirs::new(
            &[
                ("ssd1".into(), root.join("ssd1")),
                ("ssd2".into(), root.join("ssd2")),
            ],
            "replica",
            &root.join("replica"),
            None,
        )
        .expect("dirs");
        let stub = ReplicaStub::open(dirs, options).expect("stub");
        let loaded = stub.held().len();
        for p in 0..partitions {
            stub.open_partition(Gpid::new(1, p)).expect("partition");
        }
        let (replica, stop_replica) = serve(Arc::clone(&stub), replica_port).await;
        let routing = Arc::new(Routing {
            table: "temp".into(),
            app_id: 1,
            partition_count: partitions,
            replica,
        });
        let (meta, stop_meta) = serve(routing, meta_port).await;
        Harness {
            stub,
            replica,
            meta,
            loaded,
            stops: vec![stop_replica, stop_meta],
        }
    }

    /// A client of the harness.
    pub fn client(&self) -> Client {
        Client::new(ClientOptions::new(vec![SocketAddr::V4(self.meta)]))
    }

    /// Stops the services and closes the replica (flushing RocksDB).
    pub async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        let stub = self.stub;
        tokio::task::spawn_blocking(move || stub.close())
            .await
            .expect("close");
    }
}
