//! The fast part of the fuzzing (docs/benchmarks.md#fuzzing), without
//! `cargo fuzz`: the fuzz targets' own code (`fuzz/src/lib.rs`) run on
//! - the committed corpus (`fuzz/seeds/<target>/`) and every input that once
//!   crashed a target (`fuzz/regressions/<target>/`);
//! - seeds built here from the test fixtures (`tests/fixtures/**` and the
//!   mock upstream's scripts);
//! - a bounded number of mutations of those seeds from a fixed random seed
//!   (`FUZZ_REPLAY_MUTATIONS`, default 3000 per target; `FUZZ_REPLAY_SEED`),
//!   so a failure is reproducible and saved under `target/fuzz-replay-failures/`.
//!
//! `cargo test --test fuzz_replay -- --ignored write_seeds` rewrites
//! `fuzz/seeds/` from the fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../fuzz/src/lib.rs"]
mod targets;

use common::{anthropic, fixtures, scripted};
use iflow_actix::anthropic::models::ModelMap;
use iflow_actix::store::{Account, AuthType, GatewayKey, KeySpec, UsageFile, UsageRow};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use targets::{CHUNK_BREAK, StreamSetup, TARGETS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_fn(name: &str) -> fn(&[u8]) {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no target {name}"))
}

/// Every file of a directory, by name (none when it does not exist).
fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Runs one input; on a panic saves it and fails with where it went.
fn run_one(target: &str, origin: &str, input: &[u8]) {
    let f = target_fn(target);
    if std::panic::catch_unwind(|| f(input)).is_ok() {
        return;
    }
    let dir = root().join("target/fuzz-replay-failures").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("{:016x}", fnv(input));
    let path = dir.join(&name);
    std::fs::write(&path, input).unwrap();
    panic!(
        "{target} failed on {origin}; input saved as {} (replay: cargo fuzz run {target} {0}; \
         once fixed, copy it to fuzz/regressions/{target}/)",
        path.display()
    );
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ------------------------------------------------------------------- seeds

fn official_fixtures() -> Vec<(String, Value)> {
    let dir = root().join("tests/fixtures/official");
    files_in(&dir)
        .into_iter()
        .map(|(name, bytes)| (name, serde_json::from_slice(&bytes).unwrap()))
        .collect()
}

fn anthropic_fixtures() -> Vec<(String, Vec<u8>)> {
    files_in(&root().join("tests/fixtures/anthropic"))
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

fn chat_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = official_fixtures()
        .into_iter()
        .map(|(name, f)| (format!("official-{name}"), to_bytes(&f["request"])))
        .collect();
    for (name, bytes) in anthropic_fixtures() {
        let t = iflow_actix::anthropic::request::translate(&bytes, &ModelMap::default()).unwrap();
        seeds.push((
            format!("translated-{name}"),
            to_bytes(&Value::Object(t.chat.body)),
        ));
    }
    let mut usage = common::stream_body("kimi-k2.5", "hi");
    usage["stream_options"] = json!({"include_usage": true});
    usage["reasoning_effort"] = json!("high");
    usage["tools"] = json!([]);
    usage["tool_choice"] = json!("auto");
    seeds.push(("stream-options.json".into(), to_bytes(&usage)));
    let mut switches = common::user_body("deepseek-v3.2-chat", "x");
    switches["thinking"] = json!({"type": "disabled"});
    switches["chat_template_kwargs"] = json!({"enable_thinking": true});
    switches["max_tokens"] = json!(0);
    switches["stop"] = json!("");
    seeds.push(("thinking-switches.json".into(), to_bytes(&switches)));
    seeds
}

fn anthropic_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = anthropic_fixtures();
    seeds.push((
        "user-msg.json".into(),
        to_bytes(&anthropic::user_msg("hello")),
    ));
    seeds.push((
        "stream-msg.json".into(),
        to_bytes(&anthropic::stream_msg("hello")),
    ));
    let blocks = json!({
        "model": "claude-haiku-4-5", "max_tokens": 100, "system": "Be brief.",
        "stop_sequences": ["END"], "top_k": 3, "temperature": 0.2,
        "thinking": {"type": "disabled"},
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.invalid/a.png"}},
                {"type": "text", "text": "What is this?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true,
                 "content": [{"type": "text", "text": "boom"}]}]}
        ]
    });
    seeds.push(("blocks.json".into(), to_bytes(&blocks)));
    seeds
}

/// An `sse_stream` input: the setup byte, then the text cut into reads of
/// `piece` bytes (0: one read).
fn sse_input(setup: StreamSetup, text: &[u8], piece: usize) -> Vec<u8> {
    let mut out = vec![setup.to_byte()];
    if piece == 0 {
        out.extend_from_slice(text);
    } else {
        for (i, p) in text.chunks(piece).enumerate() {
            if i > 0 {
                out.push(CHUNK_BREAK);
            }
            out.extend_from_slice(p);
        }
    }
    out
}

fn sse_seeds() -> Vec<(String, Vec<u8>)> {
    let mut scripts: Vec<(String, String)> = vec![("full".into(), fixtures::upstream_sse())];
    let tool_body = json!({"messages": [{"role": "user", "content": "x"}],
                           "tools": [{"function": {"name": "get_weather"}}]});
    for name in [
        "stream_text",
        "stream_think",
        "stream_tools2",
        "stream_tools2_noindex",
        "stream_tools2_interleaved",
        "tools",
    ] {
        scripts.push((name.into(), scripted::sse(name, &tool_body)));
    }
    for biz in fixtures::BIZ_ERRORS {
        scripts.push((
            format!("biz-{}", biz.name),
            format!(
                "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                fixtures::STREAM_EVENTS[2],
                biz.body
            ),
        ));
    }
    let odd = format!(
        ": keep-alive\r\nevent: x\r\nid: 3\r\ndata:{}\r\n\r\ndata:  {}\n\ndata: not json \"choices\"\ndata: {}",
        fixtures::STREAM_EVENTS[0],
        fixtures::USAGE_EVENT,
        fixtures::STREAM_EVENTS[3]
    );
    scripts.push(("odd-framing".into(), odd));
    scripts.push((
        "openai-error".into(),
        "data: {\"error\":{\"message\":\"slow down\",\"code\":\"rate_limit_exceeded\"}}\n\n".into(),
    ));
    let mut seeds = Vec::new();
    for (name, text) in &scripts {
        for anthropic in [false, true] {
            let setup = |preserve: bool, usage: bool, end: u8| StreamSetup {
                anthropic,
                preserve_reasoning: preserve,
                wants_usage: usage,
                openai_profile: name == "openai-error",
                short_lines: false,
                end,
                keepalives: false,
            };
            let format = if anthropic { "anthropic" } else { "openai" };
            seeds.push((
                format!("{format}-{name}-whole"),
                sse_input(setup(true, false, 0), text.as_bytes(), 0),
            ));
            seeds.push((
                format!("{format}-{name}-pieces"),
                sse_input(setup(false, true, 0), text.as_bytes(), 48),
            ));
            // Cut before the end, then each way a stream can stop.
            let cut = &text.as_bytes()[..text.len() * 2 / 3];
            for end in 1..=3 {
                let mut s = setup(end == 2, end == 3, end);
                s.keepalives = end == 1;
                s.short_lines = end == 3;
                seeds.push((
                    format!("{format}-{name}-cut-end{end}"),
                    sse_input(s, cut, 7),
                ));
            }
        }
    }
    seeds
}

fn account_seeds() -> Vec<(String, Vec<u8>)> {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let go_file = br#"{
  "uuid": "6f1c2a52-6c1d-4a8e-9a59-3f2b8f0f7a11",
  "api_key": "sk-0123456789abcdef",
  "base_url": "https://apis.iflow.cn/v1",
  "auth_type": "oauth-iflow",
  "oauth_access_token": "at-1",
  "oauth_refresh_token": "rt-1",
  "oauth_expires_at": "0001-01-01T00:00:00Z",
  "created_at": "2026-02-27T10:11:12.123456789Z",
  "updated_at": "2026-02-27T10:11:12+08:00",
  "last_used_at": "0001-01-01T00:00:00Z",
  "request_count": 7,
  "custom_note": {"kept": [1, 2.5, -3, null, "x"]}
}"#;
    let mut account = Account::new(
        iflow_actix::secret::Secret::new("sk-test-0123456789abcdef"),
        "http://127.0.0.1:9/v1".into(),
        AuthType::Iflow,
        t("2026-03-01T00:00:00Z"),
    );
    account.uuid = "0d3c6a8e-58b7-4bb3-9d5c-3a3e0a6b7c21".into();
    account.state = Some(iflow_actix::store::AccountState::NeedsLogin);
    account.cooldown_until = Some(t("2026-03-01T00:05:00.5Z"));
    account.reset_at = Some(t("2026-03-01T00:01:00Z"));
    account.models = vec!["glm-5".into(), "kimi-*".into()];
    account.request_count = 42;
    let (mut key, _) = GatewayKey::generate(
        KeySpec {
            name: "ci".into(),
            admin: true,
            allowed_models: vec!["glm-*".into()],
            max_concurrency: Some(4),
            expires_at: Some(t("2027-01-01T00:00:00Z")),
        },
        t("2026-03-01T00:00:00Z"),
    )
    .unwrap();
    key.id = "key-0123456789ab".into();
    key.hash = "0".repeat(64);
    key.prefix = "sk-iflow-AbCd".into();
    key.revoked_at = Some(t("2026-03-02T00:00:00Z"));
    key.extra.insert("note".into(), json!("kept"));
    let mut usage = UsageFile {
        since: Some(t("2026-03-01T00:00:00Z")),
        ..UsageFile::default()
    };
    usage.add(&[
        UsageRow {
            account: account.uuid.clone(),
            key: "-".into(),
            model: "glm-5".into(),
            requests: 3,
            errors: 1,
            prompt_tokens: 30,
            completion_tokens: 20,
            last_used_at: Some(t("2026-03-01T00:02:00Z")),
        },
        UsageRow {
            account: account.uuid.clone(),
            key: key.id.clone(),
            model: "kimi-k2.5".into(),
            requests: 1,
            ..UsageRow::default()
        },
    ]);
    vec![
        ("go-account.json".into(), go_file.to_vec()),
        ("account.json".into(), account.to_json()),
        ("key.json".into(), serde_json::to_vec_pretty(&key).unwrap()),
        (
            "ledger.json".into(),
            serde_json::to_vec_pretty(&usage).unwrap(),
        ),
    ]
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "chat_request" => chat_seeds(),
        "sse_stream" => sse_seeds(),
        "anthropic_request" => anthropic_seeds(),
        "account_file" => account_seeds(),
        other => panic!("no seeds for {other}"),
    }
}

// --------------------------------------------------------------- mutation

/// Tokens the mutator inserts: the names and values the code branches on.
const DICT: &[&[u8]] = &[
    b"\"choices\"",
    b"\"usage\"",
    b"\"reasoning_content\"",
    b"\"tool_calls\"",
    b"\"finish_reason\"",
    b"\"signature\"",
    b"data: ",
    b"data:",
    b"[DONE]",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"\"status\":\"449\"",
    b"\"error_code\":511",
    b"\"error\"",
    b"null",
    b"true",
    b"{}",
    b"[]",
    b"\"\"",
    b"-1",
    b"0",
    b"18446744073709551616",
    b"1e400",
    b"-0",
    b"\"0001-01-01T00:00:00Z\"",
    b"\"0001-01-01T00:00:00+00:00\"",
    b"\"9999-12-31T23:59:59.999999999-23:59\"",
    b"\"role\"",
    b"\"user\"",
    b"\"assistant\"",
    b"\"tool\"",
    b"\"content\"",
    b"\"type\"",
    b"\"text\"",
    b"\"tool_use\"",
    b"\"tool_result\"",
    b"\"thinking\"",
    b"\"stream\"",
    b"\"model\"",
    b"\"index\"",
    b"\"id\"",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"\xe2\x9c",
];

/// JSON values the tree mutator puts in place of a node.
fn random_value(rng: &mut fastrand::Rng, donors: &[Value]) -> Value {
    match rng.u8(..12) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!([0u64, 1, u64::MAX, 4_000, 16_000][rng.usize(..5)]),
        3 => json!([-1i64, i64::MIN, -0][rng.usize(..3)]),
        4 => json!([0.5f64, -1e300, 1e-300, 2.000_000_000_000_000_4][rng.usize(..4)]),
        5 => json!(
            [
                "",
                " ",
                "user",
                "assistant",
                "tool",
                "system",
                "enabled",
                "disabled",
                "none",
                "high",
                "glm-4.6",
                "kimi-k2.5",
                "deepseek-v3.2-chat",
                "iFlow-ROME-30BA3B",
                "claude-opus-4-1",
                "é✓\u{0}\r\n",
                "0001-01-01T00:00:00Z",
                "0001-01-01T00:00:00.000+00:00",
                "2026-02-30T00:00:00Z",
                "oauth-iflow",
                "needs-login"
            ][rng.usize(..21)]
        ),
        6 => json!({}),
        7 => json!([]),
        8 => json!("x".repeat(rng.usize(..300))),
        _ if !donors.is_empty() => donors[rng.usize(..donors.len())].clone(),
        _ => Value::Null,
    }
}

/// Every node of a JSON tree, depth first (paths as pointers).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(c, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

const KEYS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "role",
    "content",
    "tools",
    "tool_choice",
    "thinking",
    "reasoning_effort",
    "max_tokens",
    "choices",
    "usage",
    "delta",
    "tool_calls",
    "index",
    "id",
    "function",
    "arguments",
    "status",
    "error",
    "msg",
    "uuid",
    "api_key",
    "auth_type",
    "state",
    "cooldown_until",
    "request_count",
    "rows",
    "since",
    "hash",
    "created_at",
];

/// One structural change to a JSON document.
fn mutate_json(rng: &mut fastrand::Rng, doc: &mut Value, donors: &[Value]) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let at = all[rng.usize(..all.len())].clone();
    let Some(node) = doc.pointer_mut(&at) else {
        return;
    };
    match (rng.u8(..4), node) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(rng.usize(..m.len())).cloned().unwrap();
            m.shift_remove(&k);
        }
        (1, Value::Object(m)) => {
            let v = random_value(rng, donors);
            m.insert(KEYS[rng.usize(..KEYS.len())].to_string(), v);
        }
        (0, Value::Array(a)) if !a.is_empty() => {
            a.remove(rng.usize(..a.len()));
        }
        (1, Value::Array(a)) if !a.is_empty() => {
            let i = rng.usize(..a.len());
            a.insert(i, a[i].clone());
        }
        (_, node) => *node = random_value(rng, donors),
    }
}

fn mutate_bytes(rng: &mut fastrand::Rng, input: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = input.len();
    match rng.u8(..7) {
        0 if len > 0 => input[rng.usize(..len)] ^= 1 << rng.u8(..8),
        1 if len > 0 => input[rng.usize(..len)] = rng.u8(..),
        2 => {
            let token = DICT[rng.usize(..DICT.len())];
            let at = rng.usize(..=len);
            input.splice(at..at, token.iter().copied());
        }
        3 if len > 1 => {
            let start = rng.usize(..len);
            let end = (start + rng.usize(1..=16)).min(len);
            input.drain(start..end);
        }
        4 if len > 1 => {
            let start = rng.usize(..len);
            let end = (start + rng.usize(1..=64)).min(len);
            let copy: Vec<u8> = input[start..end].to_vec();
            let at = rng.usize(..=len);
            input.splice(at..at, copy);
        }
        5 if !others.is_empty() => {
            let other = &others[rng.usize(..others.len())];
            let from = rng.usize(..=other.len());
            let at = rng.usize(..=len);
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        _ => {
            let at = rng.usize(..=len);
            input.insert(at, CHUNK_BREAK);
        }
    }
}

/// The JSON payloads of an `sse_stream` input's `data:` lines.
fn mutate_sse(rng: &mut fastrand::Rng, input: &mut Vec<u8>, donors: &[Value]) {
    if input.is_empty() || rng.u8(..4) == 0 {
        if let Some(b) = input.first_mut() {
            *b = rng.u8(..);
        }
        return;
    }
    let text: Vec<u8> = input[1..]
        .iter()
        .copied()
        .filter(|b| *b != CHUNK_BREAK)
        .collect();
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let json_lines: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].starts_with("data: {"))
        .collect();
    if json_lines.is_empty() {
        return;
    }
    let i = json_lines[rng.usize(..json_lines.len())];
    let Ok(mut doc) = serde_json::from_str::<Value>(&lines[i][6..]) else {
        return;
    };
    for _ in 0..rng.usize(1..=3) {
        mutate_json(rng, &mut doc, donors);
    }
    lines[i] = format!("data: {doc}");
    let joined = lines.join("\n");
    let piece = [0, 1, 5, 48][rng.usize(..4)];
    let setup = input[0];
    *input = vec![setup];
    if piece == 0 {
        input.extend_from_slice(joined.as_bytes());
    } else {
        for (n, p) in joined.as_bytes().chunks(piece).enumerate() {
            if n > 0 {
                input.push(CHUNK_BREAK);
            }
            input.extend_from_slice(p);
        }
    }
}

fn mutations(target: &str, count: usize, seed: u64) {
    let base: Vec<Vec<u8>> = seeds(target).into_iter().map(|(_, b)| b).collect();
    let donors: Vec<Value> = base
        .iter()
        .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
        .flat_map(|v| {
            let mut ptrs = Vec::new();
            pointers(&v, String::new(), &mut ptrs);
            ptrs.into_iter()
                .filter_map(|p| v.pointer(&p).cloned())
                .take(40)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed ^ fnv(target.as_bytes()));
    for n in 0..count {
        let mut input = base[rng.usize(..base.len())].clone();
        for _ in 0..rng.usize(1..=4) {
            match (target, rng.u8(..3)) {
                ("sse_stream", 0 | 1) => mutate_sse(&mut rng, &mut input, &donors),
                (_, 0 | 1) => match serde_json::from_slice::<Value>(&input) {
                    Ok(mut doc) => {
                        mutate_json(&mut rng, &mut doc, &donors);
                        input = serde_json::to_vec(&doc).unwrap();
                    }
                    Err(_) => mutate_bytes(&mut rng, &mut input, &base),
                },
                _ => mutate_bytes(&mut rng, &mut input, &base),
            }
        }
        run_one(target, &format!("mutation {n} (seed {seed})"), &input);
    }
}

fn mutation_count() -> usize {
    std::env::var("FUZZ_REPLAY_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn mutation_seed() -> u64 {
    std::env::var("FUZZ_REPLAY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1f10_ac71)
}

// ------------------------------------------------------------------ tests

#[test]
fn committed_corpus_and_regressions_replay() {
    for (target, _) in TARGETS {
        let seeds = files_in(&root().join("fuzz/seeds").join(target));
        assert!(!seeds.is_empty(), "fuzz/seeds/{target} is empty");
        for dir in ["fuzz/seeds", "fuzz/regressions"] {
            for (name, bytes) in files_in(&root().join(dir).join(target)) {
                run_one(target, &format!("{dir}/{target}/{name}"), &bytes);
            }
        }
    }
}

#[test]
fn fixture_seeds_replay() {
    for (target, _) in TARGETS {
        let seeds = seeds(target);
        assert!(seeds.len() >= 4, "{target}: {} seeds", seeds.len());
        for (name, bytes) in seeds {
            run_one(target, &format!("seed {name}"), &bytes);
        }
    }
}

#[test]
fn mutations_chat_request() {
    mutations("chat_request", mutation_count(), mutation_seed());
}

#[test]
fn mutations_sse_stream() {
    mutations("sse_stream", mutation_count(), mutation_seed());
}

#[test]
fn mutations_anthropic_request() {
    mutations("anthropic_request", mutation_count(), mutation_seed());
}

#[test]
fn mutations_account_file() {
    mutations("account_file", mutation_count(), mutation_seed());
}

/// Rewrites `fuzz/seeds/` from the fixtures (the corpus `scripts/fuzz` starts
/// from). Inputs found by fuzzing that are worth keeping are added by hand.
#[test]
#[ignore = "writes into fuzz/seeds; run on purpose"]
fn write_seeds() {
    for (target, _) in TARGETS {
        let dir = root().join("fuzz/seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds(target) {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

/// Found by the `sse_stream` target on the branch point: an OpenAI
/// tool-call fragment for a call whose Anthropic block another block had
/// already closed (the fuzzer's fragment had `"index": null`, read as call 0)
/// went out as an `input_json_delta` for the closed block. The Anthropic
/// stream now defers later blocks while the live call's arguments are
/// incomplete, and drops a fragment for a call whose block it stopped with
/// whole arguments; both cases are run here.
#[test]
fn late_tool_fragment_stays_inside_an_open_block() {
    for (first, late) in [("{\"a\":", "1}"), ("{\"a\":1}", ",\"b\":2}")] {
        let chunks = [
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_a",
                   "function": {"name": "f", "arguments": first}}]}}]}),
            json!({"choices": [{"delta": {"content": "text in between"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0,
                   "function": {"arguments": late}}]}}]}),
        ];
        late_fragment_case(&chunks);
    }
}

fn late_fragment_case(chunks: &[Value]) {
    use bytes::{Bytes, BytesMut};
    use iflow_actix::anthropic::stream::MessageStream;
    use iflow_actix::openai::sse::SseItem;
    use iflow_actix::openai::stream::EventShaper;
    let mut s = MessageStream::new(
        iflow_actix::profile::Profile::Iflow,
        iflow_actix::anthropic::Echo::model("m"),
    );
    let mut out = BytesMut::new();
    s.preamble(&mut out);
    for c in chunks {
        s.on_item(SseItem::Data(Bytes::from(c.to_string())), &mut out, "acc");
    }
    s.on_item(SseItem::Done, &mut out, "acc");
    let mut open = None;
    for (name, data) in anthropic::events(std::str::from_utf8(&out).unwrap()) {
        match name.as_str() {
            "content_block_start" => open = data["index"].as_u64(),
            "content_block_stop" => open = None,
            "content_block_delta" => {
                assert_eq!(
                    data["index"].as_u64(),
                    open,
                    "delta outside its block: {data}"
                );
            }
            _ => {}
        }
    }
}
