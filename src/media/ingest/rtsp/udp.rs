//! RTP over UDP for RTSP push (RFC 2326 §12.39): a SETUP with
//! `RTP/AVP;unicast;client_port=A-B` gets a server port pair (RTP on an even port, RTCP on
//! the next) bound on the address the publisher connected to. Datagrams from the
//! publisher's address are handed to the connection loop as if they had come interleaved on
//! a channel the session assigned, so the protocol state ([`super::session`]) treats both
//! transports alike. Bounded: at most [`MAX_PAIRS`] pairs per connection and
//! [`QUEUE`] datagrams queued (more are dropped, as the network would); the sockets close
//! with the connection.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::debug;

/// Socket pairs one connection may open (two per track covers a re-SETUP of each).
pub const MAX_PAIRS: usize = 8;
/// Datagrams waiting for the connection loop at most.
pub const QUEUE: usize = 256;
/// Largest datagram read (RTP over UDP stays under the path MTU; this is the IP limit).
const MAX_DATAGRAM: usize = 65_535;

/// The client ports of a UDP transport spec (`RTP/AVP;unicast;client_port=5000-5001`),
/// or `None` for a TCP, multicast or malformed one.
pub fn client_ports(transport: &str) -> Option<(u16, u16)> {
    transport.split(',').find_map(|spec| {
        let mut parts = spec.split(';').map(str::trim);
        let proto = parts.next()?;
        if !(proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVP/UDP")) {
            return None;
        }
        let mut ports = None;
        for p in parts {
            if p.eq_ignore_ascii_case("multicast") {
                return None;
            }
            if let Some(v) = p.strip_prefix("client_port=") {
                let mut it = v.split('-').map(|s| s.trim().parse::<u16>().ok());
                let rtp = it.next()??;
                let rtcp = match it.next() {
                    Some(p) => p?,
                    None => rtp.checked_add(1)?,
                };
                ports = Some((rtp, rtcp));
            }
        }
        ports.filter(|(rtp, _)| *rtp != 0)
    })
}

/// An RTP socket on an even port and an RTCP socket on the next one.
#[derive(Debug)]
pub struct Pair {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Pair {
    /// Binds a pair on `ip` (ports from the system's ephemeral range).
    pub async fn bind(ip: IpAddr) -> std::io::Result<Pair> {
        let mut last = None;
        for _ in 0..32 {
            let rtp = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
            let port = rtp.local_addr()?.port();
            if port % 2 != 0 || port == u16::MAX {
                continue;
            }
            match UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
                Ok(rtcp) => return Ok(Pair { rtp, rtcp }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free even/odd UDP port pair")))
    }

    /// (RTP port, RTCP port).
    pub fn ports(&self) -> (u16, u16) {
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        (port(&self.rtp), port(&self.rtcp))
    }
}

/// The UDP side of one connection: the reader tasks and the queue they fill.
pub struct Receivers {
    peer: IpAddr,
    tasks: JoinSet<()>,
    pairs: usize,
    tx: mpsc::Sender<(u8, Bytes)>,
    rx: mpsc::Receiver<(u8, Bytes)>,
}

impl Receivers {
    /// Only datagrams from `peer` (the publisher's address) are accepted.
    pub fn new(peer: IpAddr) -> Receivers {
        let (tx, rx) = mpsc::channel(QUEUE);
        Receivers {
            peer,
            tasks: JoinSet::new(),
            pairs: 0,
            tx,
            rx,
        }
    }

    /// True when another pair may be opened.
    pub fn room(&self) -> bool {
        self.pairs < MAX_PAIRS
    }

    /// Starts reading `pair`: RTP arrives as `channel`, RTCP as `channel + 1`.
    pub fn start(&mut self, pair: Pair, channel: u8) {
        self.pairs += 1;
        for (sock, ch) in [(pair.rtp, channel), (pair.rtcp, channel.saturating_add(1))] {
            let (tx, peer) = (self.tx.clone(), self.peer);
            self.tasks.spawn(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                loop {
                    let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                        return;
                    };
                    if from.ip() != peer {
                        debug!(%from, "UDP datagram from another address dropped");
                        continue;
                    }
                    match tx.try_send((ch, Bytes::copy_from_slice(&buf[..n]))) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
            });
        }
    }

    /// The next datagram as `(channel, packet)`; pending forever while no pair is open.
    pub async fn recv(&mut self) -> (u8, Bytes) {
        if self.pairs == 0 {
            return std::future::pending().await;
        }
        match self.rx.recv().await {
            Some(d) => d,
            // Unreachable while `self.tx` lives; never resolve rather than spin.
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ports_come_from_a_unicast_udp_transport_only() {
        assert_eq!(
            client_ports("RTP/AVP;unicast;client_port=5000-5001;mode=record"),
            Some((5000, 5001))
        );
        assert_eq!(
            client_ports("RTP/AVP/UDP;unicast;client_port=6000"),
            Some((6000, 6001))
        );
        assert_eq!(
            client_ports("RTP/AVP/TCP;interleaved=0-1,RTP/AVP;client_port=7000-7001"),
            Some((7000, 7001))
        );
        assert_eq!(
            client_ports("RTP/AVP/UDP;unicast;client_port=9274-9275;mode=record"),
            Some((9274, 9275))
        );
        assert_eq!(client_ports("RTP/AVP/TCP;unicast;interleaved=0-1"), None);
        assert_eq!(
            client_ports("RTP/AVP;multicast;client_port=5000-5001"),
            None
        );
        assert_eq!(client_ports("RTP/AVP;unicast;client_port=x-1"), None);
        assert_eq!(client_ports("RTP/AVP;unicast;client_port=65535"), None);
        assert_eq!(client_ports("RTP/AVP;unicast"), None);
    }

    #[tokio::test]
    async fn a_pair_is_an_even_port_and_the_next_one() {
        let p = Pair::bind("127.0.0.1".parse().unwrap()).await.unwrap();
        let (rtp, rtcp) = p.ports();
        assert_eq!(rtp % 2, 0);
        assert_eq!(rtcp, rtp + 1);
    }

    #[tokio::test]
    async fn datagrams_from_the_publisher_arrive_on_the_assigned_channels_and_others_do_not() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut r = Receivers::new(ip);
        let pair = Pair::bind(ip).await.unwrap();
        let (rtp, rtcp) = pair.ports();
        r.start(pair, 4);
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"rtp", ("127.0.0.1", rtp)).await.unwrap();
        let (ch, d) = tokio::time::timeout(std::time::Duration::from_secs(5), r.recv())
            .await
            .unwrap();
        assert_eq!((ch, &d[..]), (4, &b"rtp"[..]));
        client.send_to(b"rtcp", ("127.0.0.1", rtcp)).await.unwrap();
        let (ch, _) = tokio::time::timeout(std::time::Duration::from_secs(5), r.recv())
            .await
            .unwrap();
        assert_eq!(ch, 5);

        // A receiver that only accepts another address drops them.
        let mut other = Receivers::new("127.0.0.2".parse().unwrap());
        let pair = Pair::bind(ip).await.unwrap();
        let (rtp, _) = pair.ports();
        other.start(pair, 0);
        client.send_to(b"x", ("127.0.0.1", rtp)).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_millis(300), other.recv()).await;
        assert!(got.is_err(), "a stranger's datagram got through");
    }
}
