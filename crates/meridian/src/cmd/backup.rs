//! `meridian backup` (a consistent snapshot of a running server's metadata, any store) and
//! `meridian restore` (into a new data dir or an empty etcd namespace). The file format and
//! its guarantees are `meridian_server::backup`'s.

use super::CmdResult;
use clap::Args;
use meridian_server::backup;
use meridian_store::etcd::EtcdConfig;
use meridian_store::{EtcdBackend, KvBackend, RedbBackend};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `meridian backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The server's HTTP address (a follower redirects to the leader).
    #[arg(long, default_value = "127.0.0.1:7701")]
    addr: String,
    /// The file to write (written whole, then renamed into place).
    #[arg(long)]
    out: PathBuf,
    /// Token for a server run with `--tokens` (role admin)
    #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: super::ClientTlsArgs,
}

/// Flags of `meridian restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    from: PathBuf,
    /// Restore into this data dir's embedded store (it must hold no metadata).
    #[arg(long, conflicts_with = "etcd_endpoints")]
    data_dir: Option<PathBuf>,
    /// Restore into etcd at these client addresses, comma-separated (the namespace must
    /// hold no metadata).
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Option<Vec<String>>,
    /// With --etcd-endpoints: the key namespace the servers use.
    #[arg(long, default_value = "")]
    etcd_namespace: String,
}

/// Fetches a backup from a running server.
pub async fn backup(args: BackupArgs) -> CmdResult {
    let base = args.tls.url(&args.addr);
    let mut request = args
        .tls
        .http_client()?
        .build()?
        .get(format!("{base}/api/v1/backup"));
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let resp = request
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{base} answered {}: {}", resp.status(), resp.text().await?).into());
    }
    let text = resp.text().await?;
    // Checked before it replaces anything: a backup that does not parse is no backup.
    let keys = backup::parse(&text)?.len();
    let tmp = args.out.with_extension("partial");
    std::fs::write(&tmp, &text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .map_err(|e| format!("renaming into {}: {e}", args.out.display()))?;
    println!("backup of {keys} keys written to {}", args.out.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// Loads a backup into an empty store.
pub async fn restore(args: RestoreArgs) -> CmdResult {
    let text = std::fs::read_to_string(&args.from)
        .map_err(|e| format!("reading {}: {e}", args.from.display()))?;
    let pairs = backup::parse(&text)?;
    let (store, target): (Arc<dyn KvBackend>, String) = match (&args.data_dir, &args.etcd_endpoints)
    {
        (Some(dir), None) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let path = dir.join("meridian.redb");
            let store = tokio::task::spawn_blocking({
                let path = path.clone();
                move || RedbBackend::open(path)
            })
            .await??;
            (Arc::new(store), path.display().to_string())
        }
        (None, Some(endpoints)) => {
            let store = EtcdBackend::connect(&EtcdConfig {
                endpoints: endpoints.clone(),
                namespace: args.etcd_namespace.clone(),
                ..EtcdConfig::default()
            })?;
            store.wait_ready(Duration::from_secs(10)).await?;
            (Arc::new(store), format!("etcd {}", endpoints.join(",")))
        }
        _ => return Err("say where to restore: --data-dir DIR or --etcd-endpoints URLS".into()),
    };
    let written = backup::restore(store.as_ref(), pairs).await?;
    println!("restored {written} keys into {target}");
    Ok(std::process::ExitCode::SUCCESS)
}
