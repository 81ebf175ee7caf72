//! A TCP proxy in front of the S3 peer that resets requests in the middle of their body
//! (for the upload fault tests; an outage is the real server stopped, not this proxy).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A TCP proxy in front of the S3 peer: cuts the next requests larger than a threshold
/// after that many bytes (a reset mid-part).
pub struct Proxy {
    pub port: u16,
    /// Connections still to cut once this many request bytes went through.
    cut_next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let cut_next = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (cut_next.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let (client, _) = match listener.accept() {
                    Ok(x) => x,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                pipe(client, server, c.clone());
            }
        });
        Proxy {
            port,
            cut_next,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cut the next `n` connections that carry more than 1 MiB of request bytes, there.
    pub fn cut_next(&self, n: u64) {
        self.cut_next.store(n, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pipe(client: TcpStream, server: TcpStream, cuts: Arc<AtomicU64>) {
    let (mut c_rd, mut s_wr) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut s_rd, mut c_wr) = (server, client);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            let n = match c_rd.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let before = total;
            total += n as u64;
            // The first time this connection passes 1 MiB, take one cut if any is left.
            let cut = before <= (1 << 20)
                && total > (1 << 20)
                && cuts
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if cut {
                // A reset in the middle of the request body.
                let _ = c_rd.shutdown(Shutdown::Both);
                let _ = s_wr.shutdown(Shutdown::Both);
                return;
            }
            if s_wr.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_wr.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match s_rd.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if c_wr.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c_wr.shutdown(Shutdown::Both);
    });
}
