//! Sending a burst of UDP datagrams with few system calls.
//!
//! One forwarded packet becomes up to 31 datagrams (one per subscriber), and on
//! Linux each `sendto` is a system call. [`SendBatch`] collects the datagrams of a
//! burst and hands them to the kernel with `sendmmsg`, up to [`BATCH`] at a time;
//! elsewhere it falls back to one `send_to` each.

use std::net::{SocketAddr, UdpSocket};

use bytes::BytesMut;

/// Datagrams per `sendmmsg` call.
pub const BATCH: usize = 32;

/// Datagrams waiting to be sent on one socket.
#[derive(Default)]
pub struct SendBatch {
    queued: Vec<(SocketAddr, BytesMut)>,
    /// Datagrams the kernel refused (a full buffer, an unreachable peer).
    pub failed: u64,
}

impl SendBatch {
    /// Queues a datagram, sending the batch once it is full.
    pub fn push(&mut self, socket: &UdpSocket, to: SocketAddr, data: BytesMut) {
        self.queued.push((to, data));
        if self.queued.len() >= BATCH {
            self.flush(socket);
        }
    }

    /// Sends everything queued.
    pub fn flush(&mut self, socket: &UdpSocket) {
        if self.queued.is_empty() {
            return;
        }
        self.failed += send_all(socket, &self.queued);
        self.queued.clear();
    }
}

/// Sends `datagrams` in order; returns how many could not be sent.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // sendmmsg: see the SAFETY comments
fn send_all(socket: &UdpSocket, datagrams: &[(SocketAddr, BytesMut)]) -> u64 {
    use std::os::fd::AsRawFd;

    let mut failed = 0;
    for chunk in datagrams.chunks(BATCH) {
        let addresses: Vec<socket2::SockAddr> = chunk
            .iter()
            .map(|(to, _)| socket2::SockAddr::from(*to))
            .collect();
        let mut iovecs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(_, data)| libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            })
            .collect();
        let mut messages: Vec<libc::mmsghdr> = addresses
            .iter()
            .zip(iovecs.iter_mut())
            .map(|(address, iovec)| {
                // SAFETY: an all-zero msghdr is valid (no control data, no flags).
                let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
                header.msg_name = address.as_ptr() as *mut libc::c_void;
                header.msg_namelen = address.len();
                header.msg_iov = iovec as *mut libc::iovec;
                header.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: header,
                    msg_len: 0,
                }
            })
            .collect();
        let mut sent = 0;
        while sent < messages.len() {
            let rest = &mut messages[sent..];
            // SAFETY: every header points at an address, an iovec and a buffer that
            // live until this call returns, and `rest.len()` headers follow the pointer.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                sent += n as usize;
                continue;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // The first message of the rest failed: skip it, as a lossy network
            // would, and go on with the others.
            tracing::trace!(error = %err, to = %chunk[sent].0, "UDP send failed");
            failed += 1;
            sent += 1;
        }
    }
    failed
}

#[cfg(not(target_os = "linux"))]
fn send_all(socket: &UdpSocket, datagrams: &[(SocketAddr, BytesMut)]) -> u64 {
    let mut failed = 0;
    for (to, data) in datagrams {
        if let Err(err) = socket.send_to(data, to) {
            tracing::trace!(error = %err, %to, "UDP send failed");
            failed += 1;
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_arrives_whole_and_in_order_at_every_peer() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peers: Vec<UdpSocket> = (0..3)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s
            })
            .collect();
        let mut batch = SendBatch::default();
        // More than one sendmmsg call's worth, spread over the peers.
        let total = BATCH * 2 + 5;
        for i in 0..total {
            let to = peers[i % peers.len()].local_addr().unwrap();
            let data = BytesMut::from(format!("datagram {i}").as_bytes());
            batch.push(&sender, to, data);
        }
        batch.flush(&sender);
        assert_eq!(batch.failed, 0);
        for (p, peer) in peers.iter().enumerate() {
            let mut buf = [0u8; 64];
            for i in (p..total).step_by(peers.len()) {
                let (n, from) = peer.recv_from(&mut buf).unwrap();
                assert_eq!(from, sender.local_addr().unwrap());
                assert_eq!(&buf[..n], format!("datagram {i}").as_bytes());
            }
        }
    }

    #[test]
    fn a_datagram_the_kernel_refuses_does_not_stop_the_rest() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut batch = SendBatch::default();
        batch.push(
            &sender,
            peer.local_addr().unwrap(),
            BytesMut::from(&b"one"[..]),
        );
        // Too big for any UDP datagram.
        batch.push(
            &sender,
            peer.local_addr().unwrap(),
            BytesMut::zeroed(70_000),
        );
        batch.push(
            &sender,
            peer.local_addr().unwrap(),
            BytesMut::from(&b"two"[..]),
        );
        batch.flush(&sender);
        assert_eq!(batch.failed, 1);
        let mut buf = [0u8; 16];
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
    }
}
