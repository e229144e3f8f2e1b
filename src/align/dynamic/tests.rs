use super::*;

fn ok(kind: Dynamic, value: &str) -> bool {
    check(kind, value, &Facts::default())
}

#[test]
fn ids_and_hex() {
    assert!(ok(Dynamic::Hex16, "0123456789abcdef"));
    assert!(!ok(Dynamic::Hex16, "0123456789ABCDEF"));
    assert!(!ok(Dynamic::Hex16, "0123456789abcde"));
    assert!(ok(
        Dynamic::InstallationId,
        "6f1c2a52-6c1d-4a8e-9a59-3f2b8f0f7a11"
    ));
    let installed = Facts {
        installation_id: Some("6f1c2a52-6c1d-4a8e-9a59-3f2b8f0f7a11"),
        ..Facts::default()
    };
    assert!(!check(
        Dynamic::InstallationId,
        "0b9c6f1e-2d3a-4c5b-8e7f-9a0b1c2d3e4f",
        &installed
    ));
}

#[test]
fn trace_id_and_sam_follow_the_chat_request() {
    let chat = Captured {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![
            (
                "traceparent".into(),
                "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01".into(),
            ),
            (
                "conversation-id".into(),
                "0b9c6f1e-2d3a-4c5b-8e7f-9a0b1c2d3e4f".into(),
            ),
        ],
        body: Vec::new(),
    };
    let facts = Facts {
        chat: Some(&chat),
        ..Facts::default()
    };
    let trace = "0123456789abcdef0123456789abcdef";
    assert!(check(Dynamic::TraceId, trace, &facts));
    assert!(!check(Dynamic::TraceId, &"1".repeat(32), &facts));
    assert!(!ok(Dynamic::TraceId, trace), "no chat request, no match");
    let sam = format!("iflow.cli.0b9c6f1e-2d3a-4c5b-8e7f-9a0b1c2d3e4f.{trace}");
    assert!(check(Dynamic::Sam, &sam, &facts));
    assert!(!check(Dynamic::Sam, "iflow.cli..", &facts));
}

#[test]
fn numbers_versions_and_locales() {
    for good in ["0", "17", "3600000"] {
        assert!(ok(Dynamic::DurationMs, good), "{good}");
    }
    for bad in ["", "-1", "01", "1.5", "3600001"] {
        assert!(!ok(Dynamic::DurationMs, bad), "{bad}");
    }
    assert!(ok(Dynamic::CacheBuster, "fffffff"));
    assert!(ok(Dynamic::CacheBuster, "0"));
    assert!(!ok(Dynamic::CacheBuster, "10000000"));
    assert!(!ok(Dynamic::CacheBuster, "0a"));
    assert!(ok(Dynamic::NodeVersion, "v22.20.0"));
    assert!(!ok(Dynamic::NodeVersion, "22.20.0"));
    assert!(!ok(Dynamic::NodeVersion, "v22.20"));
    for good in [
        "C",
        "POSIX",
        "en_US.UTF-8",
        "zh_CN.utf8",
        "de_DE@euro",
        "en",
    ] {
        assert!(ok(Dynamic::Locale, good), "{good}");
    }
    for bad in ["", "english", "en_us", "en_US.", "en US"] {
        assert!(!ok(Dynamic::Locale, bad), "{bad}");
    }
    assert!(ok(Dynamic::OsRelease, "6.8.0-45-generic"));
    assert!(!ok(Dynamic::OsRelease, ""));
    assert!(!ok(Dynamic::OsRelease, "6.8 generic"));
}

#[test]
fn cna_is_a_cookie_token_and_the_one_handed_out() {
    assert!(ok(Dynamic::Cna, "Fq9HIVx4y2cCAXkGd2h0ZmNt"));
    assert!(!ok(Dynamic::Cna, ""));
    assert!(!ok(Dynamic::Cna, "a;b"));
    let facts = Facts {
        cna: Some("abc"),
        ..Facts::default()
    };
    assert!(check(Dynamic::Cna, "abc", &facts));
    assert!(!check(Dynamic::Cna, "abd", &facts));
}

#[test]
fn error_msg_is_message_newline_node_stack_without_the_key() {
    let facts = Facts {
        api_key: "sk-secret",
        ..Facts::default()
    };
    let good = "upstream%20refused%0AError%3A%20upstream%20refused%0A%20%20%20%20at%20generateContentInternal%20(%3Canonymous%3E)";
    assert!(check(Dynamic::ErrorMsg, good, &facts));
    // No stack, a stack without frames, an undecodable value, the key.
    for bad in [
        "upstream%20refused",
        "upstream%20refused%0AError%3A%20upstream%20refused",
        "upstream%ZZ",
        "sk-secret%0AError%3A%20x%0A%20%20%20%20at%20f%20(%3Canonymous%3E)",
    ] {
        assert!(!check(Dynamic::ErrorMsg, bad, &facts), "{bad}");
    }
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%20b%C3%A9").as_deref(), Some("a b\u{e9}"));
    assert_eq!(percent_decode("%2"), None);
    assert_eq!(percent_decode("%FF"), None);
}
