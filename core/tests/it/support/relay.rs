//! A TCP relay standing in for a browser's network path to the server, which a test
//! can cut and restore.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How a Cut picks the connections it drops: by the first bytes their client sent.
type Cut = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A TCP relay standing in for one browser's network path to the server. It can
/// fail: [`Relay::down`] closes the relayed connections a test picks and closes new
/// ones like them at once, until [`Relay::up`].
pub(crate) struct Relay {
    cut: watch::Sender<Option<Cut>>,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl Relay {
    pub(crate) async fn start(listen: SocketAddr, upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind(listen).await.expect("relay listens");
        Relay::start_on(listener, upstream)
    }

    pub(crate) fn start_on(listener: TcpListener, upstream: SocketAddr) -> Relay {
        Relay::spawn(listener, upstream, true)
    }

    /// A relay for a protocol whose server speaks first (NATS): a cut picks
    /// connections by no bytes at all (`which(&[])`).
    pub(crate) async fn server_first(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay listens");
        Relay::spawn(listener, upstream, false)
    }

    fn spawn(listener: TcpListener, upstream: SocketAddr, client_first: bool) -> Relay {
        let (cut, watching) = watch::channel(None);
        let addr = listener.local_addr().expect("relay has an address");
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, watching.clone(), client_first));
            }
        });
        Relay { cut, addr }
    }

    pub(crate) fn down(&self, which: impl Fn(&[u8]) -> bool + Send + Sync + 'static) {
        self.cut.send_replace(Some(Arc::new(which)));
    }

    pub(crate) fn up(&self) {
        self.cut.send_replace(None);
    }
}

/// Relays one connection until either side closes it or a cut picks it. Browsers
/// speak first on both HTTP and ICE-TCP, so the first bytes are there to pick by;
/// where the server speaks first, there are none.
async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut cut: watch::Receiver<Option<Cut>>,
    client_first: bool,
) {
    let mut first = Vec::new();
    if client_first {
        first.resize(4096, 0);
        let Ok(n) = client.read(&mut first).await else {
            return;
        };
        if n == 0 {
            return;
        }
        first.truncate(n);
    }
    let picked = |cut: &Option<Cut>| cut.as_ref().is_some_and(|c| c(&first));
    if picked(&cut.borrow()) {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if server.write_all(&first).await.is_err() {
        return;
    }
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(picked) => {}
    }
}
