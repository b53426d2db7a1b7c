//! The HTTPS server: a TCP listener, rustls (ring; TLS 1.2 and 1.3; ALPN h2 and http/1.1)
//! with certificates from a [`CertResolver`], and hyper-util's auto (HTTP/1.1 + h2)
//! connection builder serving an axum `Router`.
//!
//! Shutdown: when the `CancellationToken` fires the listener is closed (no new
//! connections), every open connection is told to shut down gracefully (HTTP/1: finish the
//! in-flight request, then close; h2: GOAWAY, finish open streams), and `serve` returns
//! once they are done or `drain_timeout` passed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::cert::CertResolver;

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Default `0.0.0.0:9443` (controller-runtime's webhook port, all interfaces).
    pub addr: SocketAddr,
    /// Time allowed for the TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// HTTP/1 header-read timeout (default 10 s); slow-loris protection.
    pub header_read_timeout: Duration,
    /// How long `serve` waits for in-flight requests after cancellation (default 30 s).
    pub drain_timeout: Duration,
    /// Open connections at most (default 256); further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection (default 32).
    pub max_streams_per_connection: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 9443)),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_streams_per_connection: 32,
        }
    }
}

impl ServerConfig {
    /// `host:port` as in the config file's `webhook.host`/`webhook.port` (empty host = all
    /// interfaces).
    pub fn with_host_port(host: &str, port: u16) -> std::io::Result<Self> {
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let ip: std::net::IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("webhook host {host:?} is not an IP address: {e}"),
            )
        })?;
        Ok(Self { addr: SocketAddr::new(ip, port), ..Self::default() })
    }
}

/// A bound, not yet serving, webhook server.
pub struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    config: ServerConfig,
}

impl Server {
    /// Binds the listener. Handshakes fail until `resolver` holds a certificate.
    pub async fn bind(config: ServerConfig, resolver: Arc<CertResolver>) -> std::io::Result<Self> {
        let tls = CertResolver::server_config(resolver).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(config.addr).await?;
        Ok(Self { listener, acceptor: TlsAcceptor::from(Arc::new(tls)), config })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `router` until `cancel` fires, then drains (see the module docs).
    pub async fn serve(self, router: Router, cancel: CancellationToken) -> std::io::Result<()> {
        let Server { listener, acceptor, config } = self;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "webhook server listening");
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout).keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .max_concurrent_streams(config.max_streams_per_connection);
        let builder = Arc::new(builder);
        let graceful = GracefulShutdown::new();
        let connections = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));

        loop {
            let permit = tokio::select! {
                _ = cancel.cancelled() => break,
                p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let (tcp, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(err) => {
                        // EMFILE and friends: back off a little instead of spinning.
                        tracing::warn!(%err, "webhook accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let builder = builder.clone();
            let router = router.clone();
            let watcher = graceful.watcher();
            let handshake_timeout = config.handshake_timeout;
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, %err, "webhook TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "webhook TLS handshake timed out");
                        return;
                    }
                };
                let service = TowerToHyperService::new(router);
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                if let Err(err) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, err = %err, "webhook connection ended with an error");
                }
            });
        }
        drop(listener);
        tracing::info!(connections = graceful.count(), "webhook server draining");
        if tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await.is_err() {
            tracing::warn!("webhook server drain timed out; closing remaining connections");
        }
        Ok(())
    }
}
