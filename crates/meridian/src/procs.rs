//! Child processes for the harnesses (`chaos`, `bench takeover`): the binary itself run as
//! servers and nodes, killed with the harness, signalled for faults.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Errors of the harnesses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A child process, killed (and reaped) on drop.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// How the process ended, if it has (it is reaped then).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` (SIGKILL, SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; it is not reaped until `self` is dropped,
        // so the pid cannot have been reused.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the binary itself with `args`, output appended to `log`; the child dies with the
/// harness (PR_SET_PDEATHSIG), so an interrupted run leaves nothing behind.
pub fn spawn(exe: &Path, args: &[String], log: &Path) -> Result<Proc, BoxError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env(
            "RUST_LOG",
            std::env::var("MERIDIAN_CHAOS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(Proc {
        child: cmd.spawn()?,
    })
}

/// The last `lines` lines of a process log, for error messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free loopback address (bound, then released).
pub fn free_addr() -> Result<SocketAddr, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Which of the servers at `http` (HTTP addresses) says on `/health` that it leads.
pub async fn leading_server(web: &reqwest::Client, http: &[SocketAddr]) -> Option<usize> {
    for (i, addr) in http.iter().enumerate() {
        let health = web
            .get(format!("http://{addr}/health"))
            .timeout(std::time::Duration::from_millis(500))
            .send()
            .await;
        let Ok(r) = health else { continue };
        if let Ok(v) = r.json::<serde_json::Value>().await {
            if v["role"] == "leader" {
                return Some(i);
            }
        }
    }
    None
}
