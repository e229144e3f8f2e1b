//! IFLOW_UPSTREAM_PROXY: chat requests reach the upstream through an HTTP
//! CONNECT proxy (Basic auth) or a SOCKS5 proxy (no auth or user/password).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::client::chat;
use common::gateway::{Gateway, import};
use common::mock::Mock;
use common::proxy::Proxy;
use common::{API_KEY, assert_error, fixtures, iflow, stream_body, user_body};
use tempfile::TempDir;

struct Via {
    gw: Gateway,
    account: String,
    mock: Mock,
    _dir: TempDir,
}

fn through(proxy_url: &str) -> Via {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start();
    let account = import(dir.path(), API_KEY, &mock.base_url(), "iflow");
    let gw = Gateway::start(dir.path(), &[("IFLOW_UPSTREAM_PROXY", proxy_url)]);
    Via {
        gw,
        account,
        mock,
        _dir: dir,
    }
}

/// A non-stream and a stream call both succeed and were tunnelled.
fn assert_relayed(via: &Via, proxy: &Proxy, kind: &str) {
    let resp = chat(via.gw.addr, &via.account, &user_body("glm-5", "hi"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), fixtures::completion("glm-5", true));
    let stream = chat(via.gw.addr, &via.account, &stream_body("glm-5", "hi"));
    assert_eq!(stream.text(), fixtures::client_sse(false));
    iflow::assert_signed(&via.mock.last_request(), API_KEY);
    let seen = proxy.seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|t| t == &format!("{kind} {}", via.mock.addr)),
        "{seen:?}"
    );
}

#[test]
fn http_connect_proxy_with_basic_auth_carries_the_requests() {
    let proxy = Proxy::http(Some(("proxy-user", "p@ss:word")));
    let via = through(&format!("http://proxy-user:p%40ss%3Aword@{}", proxy.addr));
    assert_relayed(&via, &proxy, "CONNECT");
}

#[test]
fn http_proxy_refusing_the_credentials_is_502_unreachable() {
    let proxy = Proxy::http(Some(("proxy-user", "right")));
    let via = through(&format!("http://proxy-user:wrong@{}", proxy.addr));
    let resp = chat(via.gw.addr, &via.account, &user_body("glm-5", "hi"));
    assert_error(&resp, 502, "upstream_error", "upstream_unreachable");
    assert!(!resp.text().contains("wrong") && !via.gw.log().contains("wrong"));
    assert!(via.mock.requests().is_empty());
    assert!(
        proxy
            .seen()
            .iter()
            .all(|t| t.starts_with("rejected CONNECT")),
        "{:?}",
        proxy.seen()
    );
}

#[test]
fn socks5_proxy_without_auth_carries_the_requests() {
    let proxy = Proxy::socks5(None);
    let via = through(&format!("socks5://{}", proxy.addr));
    assert_relayed(&via, &proxy, "SOCKS5");
}

#[test]
fn socks5_proxy_with_user_and_password_carries_the_requests() {
    let proxy = Proxy::socks5(Some(("sockuser", "sockpass")));
    let via = through(&format!("socks5://sockuser:sockpass@{}", proxy.addr));
    assert_relayed(&via, &proxy, "SOCKS5");
}
