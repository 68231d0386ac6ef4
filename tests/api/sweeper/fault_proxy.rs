//! A TCP proxy in front of a real directory that can misbehave on demand: pass traffic through,
//! cut the server's answers after N bytes in all (a connection dropped mid-listing, whether
//! the client keeps one connection or opens one per page), or answer HTTP 500.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const PASS: u8 = 0;
pub const CUT: u8 = 1;
pub const HTTP_500: u8 = 2;

#[derive(Clone)]
pub struct FaultProxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    cut_after: Arc<AtomicU64>,
}

impl FaultProxy {
    pub async fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            mode: Arc::default(),
            cut_after: Arc::new(AtomicU64::new(u64::MAX)),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let p = p.clone();
                tokio::spawn(async move { p.serve(client, upstream_port).await });
            }
        });
        proxy
    }

    pub fn set(&self, mode: u8, cut_after: u64) {
        self.cut_after.store(cut_after, Ordering::SeqCst);
        self.mode.store(mode, Ordering::SeqCst);
    }

    async fn serve(&self, mut client: TcpStream, upstream_port: u16) {
        if self.mode.load(Ordering::SeqCst) == HTTP_500 {
            let mut buf = [0u8; 4096];
            let _ = client.read(&mut buf).await;
            let body =
                r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"500"}"#;
            let resp = format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(resp.as_bytes()).await;
            return;
        }
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut ur, mut uw) = upstream.into_split();
        let budget = if self.mode.load(Ordering::SeqCst) == CUT {
            self.cut_after.load(Ordering::SeqCst)
        } else {
            u64::MAX
        };
        let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut uw).await });
        let mut sent = 0u64;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match ur.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let allowed = (budget - sent).min(n as u64) as usize;
            if cw.write_all(&buf[..allowed]).await.is_err() {
                break;
            }
            sent += allowed as u64;
            if sent >= budget {
                break; // drop the connection mid-answer
            }
        }
        up.abort();
    }
}
