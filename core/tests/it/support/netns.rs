//! A network namespace joined to this one by a veth pair, for the Firefox tests, and
//! the lock that keeps the other browser tests' Chromium away from it.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{PoisonError, RwLock, RwLockWriteGuard};

use tokio::net::TcpListener;

use super::relay::Relay;

/// The machine's network interfaces, as the browsers of concurrent tests see them.
///
/// A [`Netns`] adds an interface to this namespace for as long as it lives, and every
/// Chromium on the machine starts gathering ICE candidates on it, switching calls to a
/// path that vanishes with the namespace. So the test that makes one holds this
/// exclusively, and every other browser test holds it shared while its Chromium runs.
pub(crate) static NETWORK: RwLock<()> = RwLock::new(());

/// A network namespace of its own, joined to this one by a veth pair
/// (`outside` ↔ `inside`), torn down when dropped. Firefox refuses ICE candidates on
/// loopback addresses, so its tests run it in here: the SFU is reached at `outside`,
/// the pages at 127.0.0.1 through a relay (see [`Netns::relay_http`]).
pub(crate) struct Netns {
    pub(crate) name: String,
    pub(crate) outside: std::net::Ipv4Addr,
    pub(crate) inside: std::net::Ipv4Addr,
    /// Released after the namespace is deleted ([`Drop`] runs before fields drop).
    _network: RwLockWriteGuard<'static, ()>,
}

impl Netns {
    /// Waits until no other browser test runs (see [`NETWORK`]), then makes the namespace.
    pub(crate) fn create() -> Netns {
        let network = NETWORK.write().unwrap_or_else(PoisonError::into_inner);
        let id = std::process::id();
        let name = format!("confab-test-{id}");
        let subnet = (id % 250) as u8 + 1;
        let outside = std::net::Ipv4Addr::new(10, 213, subnet, 1);
        let inside = std::net::Ipv4Addr::new(10, 213, subnet, 2);
        let (veth_out, veth_in) = (
            format!("cfo{}", id % 100_000),
            format!("cfi{}", id % 100_000),
        );
        let netns = Netns {
            name: name.clone(),
            outside,
            inside,
            _network: network,
        };
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "`ip {}` failed: the Firefox tests need root to make a network namespace",
                args.join(" ")
            );
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &veth_out, "type", "veth", "peer", "name", &veth_in,
        ]);
        ip(&["link", "set", &veth_in, "netns", &name]);
        ip(&["addr", "add", &format!("{outside}/30"), "dev", &veth_out]);
        ip(&["link", "set", &veth_out, "up"]);
        let inside_ip = |args: &[&str]| {
            let mut full = vec!["netns", "exec", &name, "ip"];
            full.extend_from_slice(args);
            ip(&full);
        };
        inside_ip(&["addr", "add", &format!("{inside}/30"), "dev", &veth_in]);
        inside_ip(&["link", "set", &veth_in, "up"]);
        inside_ip(&["link", "set", "lo", "up"]);
        // Firefox puts only the address of the default route in its candidates. The
        // route leads to this namespace, which forwards nothing that comes from it.
        inside_ip(&["route", "add", "default", "via", &outside.to_string()]);
        let status = Command::new("sysctl")
            .args([
                "-q",
                "-w",
                &format!("net.ipv4.conf.{veth_out}.forwarding=0"),
            ])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "sysctl failed");
        netns
    }

    /// Runs `f` on a thread inside the namespace: sockets it opens live there.
    #[allow(unsafe_code)] // setns(2): see the SAFETY comment
    fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path).expect("namespace file");
                    // SAFETY: setns on this thread only, with a namespace file we hold open.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap()
        })
    }

    /// Serves `base` (http://127.0.0.1:port) at the same address inside the
    /// namespace, so pages there are a secure context with the server's own origin.
    pub(crate) async fn relay_http(&self, base: &str) -> Relay {
        let upstream: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
        let listener = self
            .run_inside(|| std::net::TcpListener::bind(upstream))
            .expect("relay listens inside the namespace");
        listener.set_nonblocking(true).unwrap();
        Relay::start_on(TcpListener::from_std(listener).unwrap(), upstream)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
