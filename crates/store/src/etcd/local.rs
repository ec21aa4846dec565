//! [`LocalEtcd`]: an etcd cluster of child processes on loopback ports, for the tests, the
//! benchmarks and the chaos harness, with the faults they inject (kill, restart, pause).

use crate::{Result, StoreError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The etcd binary: `$MERIDIAN_ETCD_BIN`, else `etcd` on the `PATH` (Debian's
/// `etcd-server` package installs `/usr/bin/etcd`).
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("MERIDIAN_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

/// One member's addresses and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running local etcd cluster. Dropping it kills every member.
pub struct LocalEtcd {
    dir: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl LocalEtcd {
    /// Starts `members` etcd members with their data under `dir`, and waits until they
    /// serve. Fails with a precise message if etcd is not installed.
    pub async fn start(members: usize, dir: &Path) -> Result<Self> {
        let mut list = Vec::with_capacity(members);
        for i in 0..members {
            list.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            });
        }
        let initial_cluster = list
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            dir: dir.to_path_buf(),
            members: list,
            initial_cluster,
        };
        for i in 0..members {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", m.name)))?;
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(etcd_binary())
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "meridian-local"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot start {}: {e} (install Debian's etcd-server, or set \
                     MERIDIAN_ETCD_BIN)",
                    etcd_binary().display()
                ))
            })?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until every running member answers a read.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let config = crate::etcd::EtcdConfig {
                endpoints: vec![self.endpoint(i)],
                request_timeout: Duration::from_secs(2),
                ..Default::default()
            };
            crate::EtcdBackend::connect(&config)?
                .wait_ready(timeout)
                .await
                .map_err(|e| {
                    StoreError::Unavailable(format!(
                        "etcd member {} did not come up (see {}): {e}",
                        m.name,
                        self.dir.join(format!("{}.log", m.name)).display()
                    ))
                })?;
        }
        Ok(())
    }

    /// The client address of member `i` (`127.0.0.1:port`).
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client address.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// How many members the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// SIGKILLs member `i` (its data stays).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data, after [`LocalEtcd::kill`].
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_ready(Duration::from_secs(30)).await
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
