//! `serve --metrics ADDR`: a minimal HTTP/1.x listener that answers `GET /metrics` with the
//! keeper's METRICS, on its own thread. It asks the event loop through the keeper socket like
//! any client (as the keeper's own uid, which METRICS allows), so it shares no state with the
//! loop and a slow or hostile scraper never holds the loop up: one scrape at a time, each
//! with a read and write timeout, the request head read up to [`MAX_HEAD`] bytes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::KeeperClient;

/// Where metrics are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAddr {
    /// A TCP address (a loopback one unless the node's metrics are meant for the network).
    Tcp(SocketAddr),
    /// A Unix stream socket at this absolute path, created mode 0600 (an existing socket
    /// there is replaced; any other file is an error).
    Unix(PathBuf),
}

impl std::fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAddr::Tcp(a) => write!(f, "http://{a}/metrics"),
            MetricsAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Longest request head read (request line and headers).
const MAX_HEAD: usize = 8192;
/// How long a scraper may take to send its request, or to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound listener.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Bind `addr` now (so that a bad address fails `serve` at once), and serve it from a thread
/// that asks the keeper at `keeper_socket`.
pub fn start(addr: &MetricsAddr, keeper_socket: &Path) -> io::Result<()> {
    let (listener, bound) = match addr {
        MetricsAddr::Tcp(a) => {
            let l = TcpListener::bind(a)?;
            // Port 0 becomes the port the kernel chose: the log says which.
            let bound = MetricsAddr::Tcp(l.local_addr()?);
            (Listener::Tcp(l), bound)
        }
        MetricsAddr::Unix(path) => {
            match std::fs::symlink_metadata(path) {
                Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                    std::fs::remove_file(path)?;
                }
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let l = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            (Listener::Unix(l), addr.clone())
        }
    };
    let keeper_socket = keeper_socket.to_path_buf();
    tracing::info!(addr = %bound, "serving metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(listener, &keeper_socket))?;
    Ok(())
}

fn serve(listener: Listener, keeper_socket: &Path) {
    let mut keeper: Option<KeeperClient> = None;
    loop {
        let accepted: io::Result<Box<dyn Stream>> = match &listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_read_timeout(Some(CLIENT_TIMEOUT));
                let _ = s.set_write_timeout(Some(CLIENT_TIMEOUT));
                Box::new(s) as Box<dyn Stream>
            }),
            Listener::Unix(l) => l.accept().map(|(s, _)| {
                let _ = s.set_read_timeout(Some(CLIENT_TIMEOUT));
                let _ = s.set_write_timeout(Some(CLIENT_TIMEOUT));
                Box::new(s) as Box<dyn Stream>
            }),
        };
        match accepted {
            Ok(mut stream) => {
                if let Err(e) = answer(&mut *stream, &mut keeper, keeper_socket) {
                    tracing::debug!("metrics scrape: {e}");
                }
            }
            // Out of fds, or the like: let it pass.
            Err(e) => {
                tracing::warn!("metrics listener: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Read one request and answer it, then close.
fn answer(
    stream: &mut dyn Stream,
    keeper: &mut Option<KeeperClient>,
    keeper_socket: &Path,
) -> io::Result<()> {
    let head = read_head(stream)?;
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => match metrics(keeper, keeper_socket) {
            Ok(text) => ("200 OK", text),
            Err(e) => ("503 Service Unavailable", format!("the keeper did not answer: {e}\n")),
        },
        ("GET" | "HEAD", _) => ("404 Not Found", "only /metrics is served\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET /metrics is served\n".to_owned()),
    };
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        reply.push_str(&body);
    }
    stream.write_all(reply.as_bytes())?;
    stream.flush()
}

/// The request head, up to the blank line, at most [`MAX_HEAD`] bytes.
fn read_head(stream: &mut dyn Stream) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too long"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// METRICS from the keeper, reconnecting once if the kept connection broke.
fn metrics(keeper: &mut Option<KeeperClient>, keeper_socket: &Path) -> anyhow::Result<String> {
    for _ in 0..2 {
        let client = match keeper {
            Some(c) => c,
            None => keeper.insert(KeeperClient::connect(keeper_socket)?),
        };
        match client.metrics() {
            Ok(text) => return Ok(text),
            Err(e) if e.is_unavailable() || matches!(e, crate::KeeperError::Io(_)) => {
                *keeper = None;
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the keeper closed the connection twice")
}
