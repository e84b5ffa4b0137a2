//! Sending and receiving bursts of UDP datagrams with few system calls.
//!
//! One forwarded packet becomes up to 31 datagrams (one per subscriber), and on
//! Linux each `sendto` is a system call. [`SendBatch`] collects the datagrams of a
//! burst and hands them to the kernel with `sendmmsg`, up to [`BATCH`] at a time;
//! [`RecvBatch`] takes up to [`BATCH`] waiting datagrams with one `recvmmsg`.
//! Elsewhere they fall back to one `send_to` or `recv_from` each.

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

/// Room for up to [`BATCH`] received datagrams of up to `SIZE` bytes (longer
/// ones are cut, as a single read would cut them).
pub struct RecvBatch<const SIZE: usize> {
    buffers: Vec<[u8; SIZE]>,
    received: Vec<(SocketAddr, usize)>,
}

impl<const SIZE: usize> Default for RecvBatch<SIZE> {
    fn default() -> Self {
        Self {
            buffers: vec![[0; SIZE]; BATCH],
            received: Vec::with_capacity(BATCH),
        }
    }
}

impl<const SIZE: usize> RecvBatch<SIZE> {
    /// Waits for a datagram (as long as the socket's read timeout allows), then
    /// takes whatever else is already waiting, up to [`BATCH`]. Returns how many.
    pub fn recv(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        self.received.clear();
        recv_some(socket, &mut self.buffers, &mut self.received)?;
        Ok(self.received.len())
    }

    /// The datagrams of the last [`RecvBatch::recv`], in the order they came.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.received
            .iter()
            .zip(&self.buffers)
            .map(|((from, len), buffer)| (*from, &buffer[..*len]))
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // recvmmsg: see the SAFETY comments
fn recv_some<const SIZE: usize>(
    socket: &UdpSocket,
    buffers: &mut [[u8; SIZE]],
    received: &mut Vec<(SocketAddr, usize)>,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;

    // On the stack: nothing is allocated per call.
    // SAFETY: an all-zero sockaddr_storage is a valid (empty) address.
    let mut addresses: [libc::sockaddr_storage; BATCH] =
        std::array::from_fn(|_| unsafe { std::mem::zeroed() });
    let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|_| libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    });
    for (iovec, buffer) in iovecs.iter_mut().zip(buffers.iter_mut()) {
        iovec.iov_base = buffer.as_mut_ptr().cast();
        iovec.iov_len = SIZE;
    }
    let count = buffers.len().min(BATCH);
    let mut messages: [libc::mmsghdr; BATCH] = std::array::from_fn(|_| libc::mmsghdr {
        // SAFETY: an all-zero msghdr is valid (no name, no data, no flags).
        msg_hdr: unsafe { std::mem::zeroed() },
        msg_len: 0,
    });
    for ((message, address), iovec) in messages
        .iter_mut()
        .zip(addresses.iter_mut())
        .zip(iovecs.iter_mut())
        .take(count)
    {
        message.msg_hdr.msg_name = (address as *mut libc::sockaddr_storage).cast();
        message.msg_hdr.msg_namelen =
            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        message.msg_hdr.msg_iov = iovec as *mut libc::iovec;
        message.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each of the first `count` headers points at an address and an iovec
    // over a buffer of `SIZE` bytes, all of which live until this call returns.
    // MSG_WAITFORONE blocks (within the socket's read timeout) for the first
    // datagram only.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            messages.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    for (message, address) in messages.iter().zip(&addresses).take(n as usize) {
        if let Some(from) = socket_addr(address) {
            received.push((from, (message.msg_len as usize).min(SIZE)));
        }
    }
    Ok(())
}

/// The address the kernel wrote into `storage` (IPv4 or IPv6).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // reading the sockaddr the family names
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn recv_some<const SIZE: usize>(
    socket: &UdpSocket,
    buffers: &mut [[u8; SIZE]],
    received: &mut Vec<(SocketAddr, usize)>,
) -> std::io::Result<()> {
    let (len, from) = socket.recv_from(&mut buffers[0])?;
    received.push((from, len));
    Ok(())
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
    fn a_burst_is_received_in_batches_in_order_with_its_senders() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let to = receiver.local_addr().unwrap();
        let senders: Vec<UdpSocket> = (0..2)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let total = BATCH + 7;
        for i in 0..total {
            senders[i % 2]
                .send_to(format!("datagram {i}").as_bytes(), to)
                .unwrap();
        }
        // One longer than the buffers is cut, as one read would cut it.
        senders[0].send_to(&[7; 40], to).unwrap();
        let mut batch = RecvBatch::<16>::default();
        let mut got = Vec::new();
        let mut calls = 0;
        while got.len() < total + 1 {
            let n = batch.recv(&receiver).expect("the burst is waiting");
            assert!((1..=BATCH).contains(&n));
            calls += 1;
            got.extend(batch.datagrams().map(|(from, data)| (from, data.to_vec())));
        }
        if cfg!(target_os = "linux") {
            assert!(calls <= 3, "{calls} calls for {} datagrams", total + 1);
        }
        for (i, (from, data)) in got.iter().take(total).enumerate() {
            assert_eq!(*from, senders[i % 2].local_addr().unwrap());
            assert_eq!(data, format!("datagram {i}").as_bytes());
        }
        assert_eq!(got[total].1, vec![7; 16]);
        // Nothing more: the read timeout ends the wait with an error, not a hang.
        let quiet = batch.recv(&receiver).unwrap_err();
        assert!(matches!(
            quiet.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
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
