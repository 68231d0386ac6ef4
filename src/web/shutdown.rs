//! Stopping on SIGTERM (or SIGINT) without dropping a request that has already reached us.
//!
//! actix's own signal handling stops the accept loop and closes the listening socket at once,
//! then lets the workers finish. Two kinds of request were lost that way, seen under load in a
//! rolling restart (tests/api/replicas): connections the kernel had already accepted into the
//! listen queue were reset when the socket closed, and connections the accept thread had
//! handed to a worker but the worker had not started were dropped by the worker's shutdown.
//! A proxy sees both as a failed request after sending it ("connection reset by peer",
//! "upstream prematurely closed"); it may retry a GET elsewhere, never a POST.
//!
//! So the bridge stops in steps: on Linux a socket filter on the listener drops new
//! connection attempts (their SYN is retransmitted and then refused once the socket is
//! closed, so the proxy tries another replica, with nothing sent yet), `/readyz` answers
//! 503, the queue of already-accepted connections is served until it is empty (bounded),
//! the workers get a moment to start what they were handed, and only then does actix stop
//! gracefully, finishing every request in flight.

use actix_web::dev::ServerHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the listen queue may take to empty before stopping anyway.
const QUEUE_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Time for workers to pick up connections the accept thread has just handed them.
const HANDOVER: Duration = Duration::from_millis(50);

/// Shared with `/readyz`: set once the process has begun to stop.
#[derive(Clone, Default)]
pub struct Stopping(Arc<AtomicBool>);

impl Stopping {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Waits for SIGTERM or SIGINT, then stops the server in the steps described above.
pub async fn on_signal(server: ServerHandle, listener_fd: Option<i32>, stopping: Stopping) {
    if wait_for_signal().await.is_err() {
        tracing::warn!("cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL");
        return;
    }
    tracing::info!("stop requested: refusing new connections, serving those already queued");
    stopping.0.store(true, Ordering::Relaxed);
    if let Some(fd) = listener_fd {
        if let Err(e) = refuse_new_connections(fd) {
            tracing::warn!(error = %e, "cannot filter the listener; queued connections may be reset");
        } else {
            let start = Instant::now();
            while queued(fd).is_some_and(|n| n > 0) && start.elapsed() < QUEUE_DRAIN_LIMIT {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    tokio::time::sleep(HANDOVER).await;
    server.stop(true).await;
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Attaches a classic BPF program that drops every packet to the listening socket: new SYNs
/// go unanswered, while connections already in the accept queue stay there to be accepted.
#[cfg(target_os = "linux")]
fn refuse_new_connections(fd: i32) -> std::io::Result<()> {
    /// `SO_ATTACH_FILTER` from asm-generic/socket.h (libc does not export it for Linux).
    const SO_ATTACH_FILTER: libc::c_int = 26;
    // BPF_RET | BPF_K, k = 0: accept zero bytes of the packet, i.e. drop it.
    let mut drop_all = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: drop_all.as_mut_ptr(),
    };
    // SAFETY: `fd` is the listener's descriptor, still open (actix closes it only when it
    // stops, which happens after this); `prog` points at a valid one-instruction program
    // that the kernel copies before the call returns.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn refuse_new_connections(_fd: i32) -> std::io::Result<()> {
    Err(std::io::Error::other("only supported on Linux"))
}

/// Connections waiting in the listener's accept queue (`tcpi_unacked` of a listening socket).
#[cfg(target_os = "linux")]
fn queued(fd: i32) -> Option<u32> {
    // SAFETY: an all-zero tcp_info is a valid value; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `fd` is open (see above); `info` and `len` are valid for writes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info.tcpi_unacked)
}

#[cfg(not(target_os = "linux"))]
fn queued(_fd: i32) -> Option<u32> {
    None
}
