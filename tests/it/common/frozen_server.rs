//! A PostgreSQL server that can be frozen: a proxy in front of the test server, on a Unix
//! socket of its own, that stops passing bytes either way while frozen, as a server stopped
//! with SIGSTOP (or a network that drops packets) would. Connections stay open; nothing
//! answers.

use std::path::PathBuf;
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;

/// Where the proxy forwards to.
#[derive(Clone)]
enum Upstream {
    Socket(String),
    Tcp(String, u16),
}

pub struct FreezableServer {
    /// Options that reach the server through the proxy.
    pub options: PgConnectOptions,
    frozen: Arc<watch::Sender<bool>>,
    accepting: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl FreezableServer {
    /// A proxy to the server `options` reaches (the same user and database).
    pub async fn in_front_of(options: &PgConnectOptions) -> Self {
        let port = options.get_port();
        let upstream = match options.get_socket() {
            Some(dir) => Upstream::Socket(format!("{}/.s.PGSQL.{port}", dir.display())),
            None if options.get_host().starts_with('/') => {
                Upstream::Socket(format!("{}/.s.PGSQL.{port}", options.get_host()))
            }
            None => Upstream::Tcp(options.get_host().to_string(), port),
        };
        let dir = tempfile::tempdir().expect("proxy directory");
        let path: PathBuf = dir.path().join(format!(".s.PGSQL.{port}"));
        let listener = UnixListener::bind(&path).expect("bind the proxy's socket");
        let (frozen, _) = watch::channel(false);
        let frozen = Arc::new(frozen);
        let accepting = tokio::spawn(accept(listener, upstream, frozen.clone()));
        Self {
            options: options.clone().socket(dir.path()),
            frozen,
            accepting,
            _dir: dir,
        }
    }

    /// Stops (`true`) or resumes (`false`) passing bytes on every connection.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

impl Drop for FreezableServer {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(listener: UnixListener, upstream: Upstream, frozen: Arc<watch::Sender<bool>>) {
    while let Ok((client, _)) = listener.accept().await {
        let upstream = upstream.clone();
        let frozen = frozen.clone();
        tokio::spawn(async move {
            match upstream {
                Upstream::Socket(path) => {
                    if let Ok(server) = UnixStream::connect(path).await {
                        relay(client, server, &frozen).await;
                    }
                }
                Upstream::Tcp(host, port) => {
                    if let Ok(server) = TcpStream::connect((host.as_str(), port)).await {
                        relay(client, server, &frozen).await;
                    }
                }
            }
        });
    }
}

/// Passes bytes between `client` and `server`, each way until its sender closes.
async fn relay(
    client: UnixStream,
    server: impl AsyncRead + AsyncWrite,
    frozen: &watch::Sender<bool>,
) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = tokio::io::split(server);
    tokio::join!(
        pump(client_read, server_write, frozen.subscribe()),
        pump(server_read, client_write, frozen.subscribe()),
    );
}

/// Copies `from` to `to`, holding what it read while frozen.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if frozen.wait_for(|frozen| !frozen).await.is_err() {
            break;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
