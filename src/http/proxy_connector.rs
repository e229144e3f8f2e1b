//! Upstream connections through `IFLOW_UPSTREAM_PROXY`: an HTTP proxy (CONNECT
//! tunnel, optional Basic auth) or a SOCKS5 proxy (optional user/password).
//! Plugged into awc as its TCP connector; TLS then runs inside the tunnel, and
//! awc's connect timeout covers the whole handshake.

use crate::config::{ProxyScheme, ProxyUrl};
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use actix_web::http::Uri;
use base64::Engine;
use futures::future::LocalBoxFuture;
use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone)]
pub struct ProxyConnector {
    proxy: Rc<ProxyUrl>,
}

impl ProxyConnector {
    pub fn new(proxy: ProxyUrl) -> Self {
        Self {
            proxy: Rc::new(proxy),
        }
    }
}

impl Service<ConnectInfo<Uri>> for ProxyConnector {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let proxy = self.proxy.clone();
        Box::pin(async move {
            let host = req.hostname().to_string();
            let port = req.port();
            let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
                .await
                .map_err(ConnectError::Io)?;
            let _ = stream.set_nodelay(true);
            match proxy.scheme {
                ProxyScheme::Http => http_connect(&mut stream, &proxy, &host, port).await,
                ProxyScheme::Socks5 => socks5_connect(&mut stream, &proxy, &host, port).await,
            }
            .map_err(ConnectError::Io)?;
            Ok(Connection::new(req.request().clone(), stream))
        })
    }
}

fn proxy_error(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// `CONNECT host:port`, then reads the proxy's reply head (and nothing more:
/// the tunnel's bytes belong to TLS).
pub async fn http_connect(
    stream: &mut TcpStream,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> io::Result<()> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, pass)) = &proxy.credentials {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", pass.expose()));
        head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;

    let mut reply = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n\r\n") {
        if reply.len() > 16 * 1024 {
            return Err(proxy_error("proxy reply head is too long"));
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(proxy_error("proxy closed the connection during CONNECT"));
        }
        reply.push(byte[0]);
    }
    let status_line = reply.split(|b| *b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(proxy_error(format!(
            "proxy refused CONNECT to {authority}: {}",
            status_line.trim()
        )));
    }
    Ok(())
}

/// RFC 1928 CONNECT, with RFC 1929 username/password when configured. The
/// host name is sent as-is, so the proxy resolves it.
pub async fn socks5_connect(
    stream: &mut TcpStream,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> io::Result<()> {
    let greeting: &[u8] = if proxy.credentials.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    stream.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    match (choice, &proxy.credentials) {
        ([5, 0], _) => {}
        ([5, 2], Some((user, pass))) => {
            let (u, p) = (user.as_bytes(), pass.expose().as_bytes());
            let (ul, pl) = (u8::try_from(u.len()), u8::try_from(p.len()));
            let (Ok(ul), Ok(pl)) = (ul, pl) else {
                return Err(proxy_error("SOCKS5 user or password longer than 255 bytes"));
            };
            let mut auth = vec![1, ul];
            auth.extend_from_slice(u);
            auth.push(pl);
            auth.extend_from_slice(p);
            stream.write_all(&auth).await?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await?;
            if status[1] != 0 {
                return Err(proxy_error("SOCKS5 proxy rejected the user/password"));
            }
        }
        _ => return Err(proxy_error("SOCKS5 proxy offered no usable auth method")),
    }

    let mut request = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = host.as_bytes();
            let len = u8::try_from(name.len())
                .map_err(|_| proxy_error("host name too long for SOCKS5"))?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(name);
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;

    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[1] != 0 {
        return Err(proxy_error(format!(
            "SOCKS5 proxy refused the connection to {host}:{port} (reply {})",
            head[1]
        )));
    }
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            usize::from(len[0])
        }
        other => {
            return Err(proxy_error(format!(
                "SOCKS5 reply has address type {other}"
            )));
        }
    };
    let mut rest = vec![0u8; addr_len + 2];
    stream.read_exact(&mut rest).await?;
    Ok(())
}
