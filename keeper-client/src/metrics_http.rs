//! A minimal HTTP/1.x endpoint that answers `GET /metrics` with Prometheus text, for the
//! keeper (`fuse-keeper serve --metrics`) and for servers that publish their own counters
//! (passthroughfs `-o metrics=ADDR`). One thread serves one scrape at a time, each with a
//! read and a write timeout and a request head of at most [`MAX_HEAD`] bytes, so a slow or
//! hostile scraper holds up only other scrapes, never the caller; the exposition comes from a
//! closure called once per scrape.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

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
pub const MAX_HEAD: usize = 8192;
/// How long a scraper may take to send its request, or to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound listener.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// What renders one scrape: the exposition, or why there is none (answered 503).
pub type Render = Box<dyn FnMut() -> Result<String, String> + Send>;

/// Bind `addr` now (so that a bad address fails at once) and serve it from a new thread named
/// `thread`, calling `render` for each `GET /metrics`. Returns the bound address (a TCP port 0
/// becomes the port the kernel chose).
pub fn start(addr: &MetricsAddr, thread: &str, render: Render) -> io::Result<MetricsAddr> {
    let (listener, bound) = match addr {
        MetricsAddr::Tcp(a) => {
            let l = TcpListener::bind(a)?;
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
    std::thread::Builder::new().name(thread.into()).spawn(move || serve(listener, render))?;
    Ok(bound)
}

fn serve(listener: Listener, mut render: Render) {
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
            // A scraper that goes away or sends garbage affects only its own scrape.
            Ok(mut stream) => {
                let _ = answer(&mut *stream, &mut render);
            }
            // Out of fds, or the like: let the moment pass.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Read one request and answer it, then close.
fn answer(stream: &mut dyn Stream, render: &mut Render) -> io::Result<()> {
    let head = read_head(stream)?;
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => match render() {
            Ok(text) => ("200 OK", text),
            Err(e) => ("503 Service Unavailable", format!("{e}\n")),
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

impl std::str::FromStr for MetricsAddr {
    type Err = String;

    /// An absolute path (a Unix socket), or `HOST:PORT` with a numeric host.
    fn from_str(v: &str) -> Result<MetricsAddr, String> {
        if v.starts_with('/') {
            return Ok(MetricsAddr::Unix(PathBuf::from(v)));
        }
        v.parse().map(MetricsAddr::Tcp).map_err(|_| {
            "needs HOST:PORT with a numeric address (127.0.0.1:9464, [::1]:9464) or an \
             absolute path"
                .to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_tcp_or_absolute_paths() {
        assert!(matches!("127.0.0.1:9464".parse(), Ok(MetricsAddr::Tcp(_))));
        assert!(matches!("[::1]:9464".parse(), Ok(MetricsAddr::Tcp(_))));
        assert!(matches!("/run/k.metrics".parse(), Ok(MetricsAddr::Unix(_))));
        assert!("localhost".parse::<MetricsAddr>().is_err());
        assert!("rel/path".parse::<MetricsAddr>().is_err());
    }

    #[test]
    fn a_scrape_gets_the_rendered_text_and_other_paths_404() {
        let addr: MetricsAddr = "127.0.0.1:0".parse().unwrap();
        let mut n = 0;
        let render: Render = Box::new(move || {
            n += 1;
            Ok(format!("x_total {n}\n"))
        });
        let MetricsAddr::Tcp(bound) = start(&addr, "test-metrics", render).unwrap() else {
            panic!("not tcp");
        };
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect(bound).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let first = get("/metrics");
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(first.contains("version=0.0.4") && first.ends_with("\r\n\r\nx_total 1\n"));
        assert!(get("/metrics?x=1").ends_with("x_total 2\n"));
        assert!(get("/other").starts_with("HTTP/1.1 404"));
    }

    /// A scraper that connects and says nothing, one that sends an endless head and one that
    /// sends garbage cost the others at most the read timeout each: the next scrape is served.
    #[test]
    fn hostile_scrapers_hold_up_only_their_own_scrape() {
        let addr: MetricsAddr = "127.0.0.1:0".parse().unwrap();
        let render: Render = Box::new(|| Ok("up 1\n".to_owned()));
        let MetricsAddr::Tcp(bound) = start(&addr, "test-metrics", render).unwrap() else {
            panic!("not tcp");
        };
        let silent = std::net::TcpStream::connect(bound).unwrap();
        let mut endless = std::net::TcpStream::connect(bound).unwrap();
        let _ = endless.write_all(&[b'a'; 3 * MAX_HEAD]);
        let mut garbage = std::net::TcpStream::connect(bound).unwrap();
        garbage.write_all(b"\xff\xfe\x00 \x01\r\n\r\n").unwrap();
        let mut s = std::net::TcpStream::connect(bound).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK") && out.ends_with("up 1\n"), "{out}");
        let mut refused = String::new();
        garbage.read_to_string(&mut refused).unwrap();
        assert!(refused.starts_with("HTTP/1.1 405"), "{refused}");
        drop(silent);
    }
}
