//! The `/metrics` endpoint: hyper 1 on a tokio current-thread runtime, in a
//! thread of its own so the supervising islander never waits on a scrape.
//!
//! The address is bound in [`MetricsServer::bind`], before the isle starts,
//! so a bad or busy address fails `islander run` up front and leaves
//! nothing behind. Scrapes are answered one at a time on that thread: each
//! takes milliseconds, and a single-threaded server keeps the cost of
//! watching isles off the cores they run on.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::sys::signal::SigSet;
use prometheus::Registry;

use super::collector::{render, IsleCollector};
use super::{MetricsError, Result};
use crate::ebpf::Observer;
use crate::paths::StateRoot;

/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound, not yet serving, metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` now: `:PORT` (every interface, IPv6 and IPv4),
    /// `IPV4:PORT`, `[IPV6]:PORT` or `localhost:PORT`. Port 0 picks a free
    /// port; [`local_addr`](Self::local_addr) tells which.
    pub fn bind(addr: &str) -> Result<MetricsServer> {
        let candidates = parse_addr(addr)?;
        let mut last = None;
        for candidate in &candidates {
            match TcpListener::bind(candidate) {
                Ok(listener) => {
                    let addr = listener.local_addr().map_err(|source| MetricsError::Bind {
                        addr: candidate.to_string(),
                        source,
                    })?;
                    return Ok(MetricsServer { listener, addr });
                }
                // `:PORT` on a host without IPv6 falls back to IPv4.
                Err(e) if is_no_family(&e) => last = Some((candidate, e)),
                Err(e) => return Err(bind_error(addr, e)),
            }
        }
        let (_, e) = last.expect("every address form yields at least one candidate");
        Err(bind_error(addr, e))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `GET /metrics` for the running isles of `root` until the
    /// process exits, from a new thread. The registry is this server's own,
    /// so two servers in one process never mix their figures.
    pub fn serve(self, root: StateRoot, observer: Option<Arc<Observer>>) -> JoinHandle<()> {
        let registry = Registry::new();
        // The descriptors are fixed in the code, and tests register them.
        IsleCollector::register(&registry, root, observer)
            .expect("islander's metric descriptors are valid and registered once");
        let registry = Arc::new(registry);
        let addr = self.addr;
        std::thread::Builder::new()
            .name("islander-metrics".into())
            .spawn(move || {
                // islander takes its signals through a signalfd, which only
                // works while no thread leaves them unblocked: were this
                // thread spawned before they are blocked, a SIGTERM could
                // land here and kill islander before it cleans up.
                if let Err(e) = SigSet::all().thread_block() {
                    tracing::warn!("metrics thread: blocking signals: {e}");
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("metrics on {addr}: cannot start the tokio runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(accept_loop(self.listener, addr, registry));
            })
            .expect("the metrics thread can be spawned")
    }
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, registry: Arc<Registry>) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics on {addr}: cannot watch the socket: {e}");
            return;
        }
    };
    tracing::debug!("serving metrics on http://{addr}/metrics");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("metrics on {addr}: accepting a connection: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, registry.clone()));
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(route(req.method(), req.uri().path(), &registry))
}

/// Answers one request; the body of HEAD answers is dropped by hyper.
fn route(method: &Method, path: &str, registry: &Registry) -> Response<Full<Bytes>> {
    if path != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: islander serves /metrics only\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match render(registry) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(prometheus::TEXT_FORMAT),
            );
            response
        }
        Err(e) => {
            tracing::warn!("encoding metrics: {e}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("encoding metrics: {e}\n"),
            )
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The socket addresses `value` stands for, to be tried in order.
pub(crate) fn parse_addr(value: &str) -> Result<Vec<SocketAddr>> {
    let bad = |reason| MetricsError::BadAddress {
        value: value.to_string(),
        reason,
    };
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(bad("no ':PORT'"));
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the port is not a number"));
    }
    let port: u16 = port.parse().map_err(|_| bad("the port is above 65535"))?;
    let addrs = match host {
        "" => vec![
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        ],
        // Not resolved: a scrape endpoint must not depend on a resolver,
        // and "localhost" is loopback by definition (RFC 6761).
        "localhost" => vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))],
        _ => {
            let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(v6) => v6.parse::<Ipv6Addr>().map(Into::into),
                None if host.contains(':') => {
                    return Err(bad("an IPv6 address needs brackets, as in [::1]:9100"))
                }
                None => host.parse::<Ipv4Addr>().map(Into::into),
            };
            let ip: std::net::IpAddr =
                ip.map_err(|_| bad("the host is not an IP address or localhost"))?;
            vec![SocketAddr::new(ip, port)]
        }
    };
    Ok(addrs)
}

fn is_no_family(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}

fn bind_error(addr: &str, source: io::Error) -> MetricsError {
    let addr = addr.to_string();
    match source.raw_os_error() {
        Some(libc::EADDRINUSE) => MetricsError::InUse { addr },
        Some(libc::EADDRNOTAVAIL) => MetricsError::NotLocal { addr },
        _ => MetricsError::Bind { addr, source },
    }
}
