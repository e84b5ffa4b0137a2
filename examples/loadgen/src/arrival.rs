//! When each datagram reached the generator's socket: the kernel's receive
//! timestamp (`SO_TIMESTAMPNS`), so that the latency the generator reports runs
//! from the sender's stamp to the datagram's arrival, and the time it then waits
//! for its participant's turn on the generator's own (busy) threads is counted
//! apart, as the generator's, not the server's.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Asks the kernel to stamp every datagram `socket` receives.
#[allow(unsafe_code)] // setsockopt: see the SAFETY comment
pub(crate) fn enable(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value is a live c_int of the length given.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram if one is queued (`WouldBlock` if not): its length, sender, and
/// when it arrived on the monotonic clock (`now` when the kernel gave no stamp).
pub(crate) fn try_recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    now: Instant,
) -> io::Result<(usize, SocketAddr, Instant)> {
    let (n, from, stamp) = socket.try_io(Interest::READABLE, || recv_stamped(socket, buf))?;
    let arrived = stamp
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .and_then(|waited| now.checked_sub(waited.min(Duration::from_secs(10))))
        .unwrap_or(now);
    Ok((n, from, arrived))
}

#[allow(unsafe_code)] // recvmsg and its control messages: see the SAFETY comments
fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    // Room for one timestamp control message, 8-byte aligned.
    let mut control = [0u64; 8];
    let mut iovec = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `try_init` hands a zeroed address storage and its length, which
    // recvmsg fills in; everything the header points at lives until it returns.
    let ((n, stamp), address) = unsafe {
        socket2::SockAddr::try_init(|storage, length| {
            // SAFETY: an all-zero msghdr is valid (no name, no data, no flags).
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_name = storage.cast();
            header.msg_namelen = *length;
            header.msg_iov = &mut iovec;
            header.msg_iovlen = 1;
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = std::mem::size_of_val(&control);
            let n = libc::recvmsg(socket.as_raw_fd(), &mut header, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *length = header.msg_namelen;
            Ok((n as usize, timestamp(&header)))
        })?
    };
    let from = address
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP sender"))?;
    Ok((n, from, stamp))
}

/// The `SCM_TIMESTAMPNS` control message of a received `header`, if any.
///
/// # Safety
/// `header` is one `recvmsg` just filled, with its control buffer alive.
#[allow(unsafe_code)]
unsafe fn timestamp(header: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: the kernel wrote `msg_controllen` bytes of control messages;
    // CMSG_FIRSTHDR and CMSG_NXTHDR stay within them.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(header) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR is in the buffer.
        let c = unsafe { &*cmsg };
        if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
            // SAFETY: an SCM_TIMESTAMPNS message carries one timespec, perhaps
            // unaligned.
            let at: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            return Some(
                SystemTime::UNIX_EPOCH + Duration::new(at.tv_sec as u64, at.tv_nsec as u32),
            );
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(header, cmsg) };
    }
    None
}
