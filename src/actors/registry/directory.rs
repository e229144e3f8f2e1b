//! What the registry publishes for the hot path: a read-only directory from
//! bearer token to account or gateway key, swapped whole on every change and
//! read by handlers without a message round trip. The handles share atomics
//! (usage, slot counts, health) with the actors that own them.

use crate::actors::upstream::{SlotStats, UpstreamActor};
use crate::store::{Account, AccountState, AuthType, GatewayKey};
use actix::Addr;
use arc_swap::ArcSwap;
use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// What a request needs to know about its account.
#[derive(Clone)]
pub struct AccountHandle {
    pub id: Arc<str>,
    /// `short_id(id)`: what logs, errors and metrics show.
    pub label: Arc<str>,
    pub auth_type: AuthType,
    /// Models the account serves in the pool; empty = any.
    pub models: Vec<String>,
    pub upstream: Addr<UpstreamActor>,
    pub slots: Arc<Semaphore>,
    pub stats: Arc<SlotStats>,
    pub usage: Arc<UsageCounter>,
    pub health: Arc<AccountHealth>,
}

impl AccountHandle {
    /// Whether the pool may send `model` here (a trailing `*` in the list
    /// matches a prefix, as in a key's allowed models).
    pub fn serves(&self, model: &str) -> bool {
        crate::store::keys::model_allowed(&self.models, model)
    }
}

/// Requests served since the last flush.
#[derive(Debug, Default)]
pub struct UsageCounter {
    requests: AtomicU64,
    last_used_ms: AtomicI64,
}

impl UsageCounter {
    pub fn record(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.last_used_ms
            .fetch_max(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    pub fn pending(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn last_used(&self) -> Option<DateTime<Utc>> {
        from_ms(self.last_used_ms.load(Ordering::Relaxed))
    }

    pub(super) fn take(&self) -> u64 {
        self.requests.swap(0, Ordering::Relaxed)
    }

    pub(super) fn restore(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }
}

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    match ms {
        0 => None,
        ms => Utc.timestamp_millis_opt(ms).single(),
    }
}

/// How long an account rests after failures: `Retry-After` when the
/// upstream gave one, otherwise `base × 2^(failures-1)`; never above `max`.
#[derive(Debug, Clone, Copy)]
pub struct CooldownPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl CooldownPolicy {
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .base
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)));
        retry_after.unwrap_or(backoff).min(self.max)
    }
}

/// Whether the pool may use an account now. Mirrors the account file's
/// `state` and `cooldown_until`, and is changed at once by request outcomes.
#[derive(Debug, Default)]
pub struct AccountHealth {
    cooldown_until_ms: AtomicI64,
    failures: AtomicU32,
    /// Persisted `state: key-invalid`.
    key_invalid: AtomicBool,
    /// Persisted `state: needs-login`.
    needs_login: AtomicBool,
    /// This process saw the key refused; cleared when credentials change.
    refused: AtomicBool,
    /// When a refused key last led to a refresh (ms since the epoch; 0:
    /// never).
    refusal_refresh_ms: AtomicI64,
}

/// A refused key leads to a refresh at most this often per account.
const REFUSAL_REFRESH_SPACING_MS: i64 = 60_000;

impl AccountHealth {
    pub fn from_account(account: &Account) -> Self {
        let health = Self::default();
        health.apply(account);
        health
    }

    /// Takes the persisted state (after a write, or a change by the CLI). A
    /// cooldown only grows here: a late write must not shorten one that
    /// memory has already extended.
    pub fn apply(&self, account: &Account) {
        // A file may say anything (hand edits, clock jumps): never rest
        // longer than the ceiling from now.
        let ceiling = chrono::Utc::now().timestamp_millis()
            + i64::try_from(crate::config::COOLDOWN_CEILING.as_millis()).unwrap_or(i64::MAX);
        let until = account
            .cooldown_until
            .map_or(0, |t| t.timestamp_millis())
            .min(ceiling);
        self.cooldown_until_ms.fetch_max(until, Ordering::Relaxed);
        self.key_invalid.store(
            account.state == Some(AccountState::KeyInvalid),
            Ordering::Relaxed,
        );
        self.needs_login.store(
            account.state == Some(AccountState::NeedsLogin),
            Ordering::Relaxed,
        );
    }

    /// `token reset`: forget refusal, cooldown and failures, then take the file.
    pub fn reset(&self, account: &Account) {
        self.refused.store(false, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.cooldown_until_ms.store(0, Ordering::Relaxed);
        self.apply(account);
    }

    /// The file says `key-invalid`.
    pub fn marked_key_invalid(&self) -> bool {
        self.key_invalid.load(Ordering::Relaxed)
    }

    /// The key must not be used: marked invalid, or refused since the
    /// credentials last changed.
    pub fn key_refused(&self) -> bool {
        self.marked_key_invalid() || self.refused.load(Ordering::Relaxed)
    }

    pub fn refuse_key(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }

    /// Whether a refused key may be answered with a refresh now, and if so
    /// books it: at most one a minute per account, so that a client that
    /// keeps retrying a refused key (pinned requests are never kept out)
    /// does not hammer the token endpoint.
    pub fn take_refusal_refresh(&self, now: DateTime<Utc>) -> bool {
        let now_ms = now.timestamp_millis();
        let last = self.refusal_refresh_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < REFUSAL_REFRESH_SPACING_MS {
            return false;
        }
        self.refusal_refresh_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// New credentials (or a reset): give the key another chance.
    pub fn forgive_key(&self) {
        self.refused.store(false, Ordering::Relaxed);
    }

    /// Remaining cooldown, if any.
    pub fn cooling(&self, now: DateTime<Utc>) -> Option<Duration> {
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        let left = until - now.timestamp_millis();
        (left > 0).then(|| Duration::from_millis(left.unsigned_abs()))
    }

    /// Usable by the pool: key not refused, not cooling down.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        !self.key_refused() && self.cooling(now).is_none()
    }

    pub fn label(&self, now: DateTime<Utc>) -> &'static str {
        if self.key_refused() {
            "key-invalid"
        } else if self.cooling(now).is_some() {
            "cooldown"
        } else if self.needs_login.load(Ordering::Relaxed) {
            "needs-login"
        } else {
            "active"
        }
    }

    pub fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Starts (or extends) a cooldown; returns its end.
    pub fn start_cooldown(
        &self,
        policy: &CooldownPolicy,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let delay = policy.delay(failures, retry_after);
        let until = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
        self.cooldown_until_ms
            .fetch_max(until.timestamp_millis(), Ordering::Relaxed);
        from_ms(self.cooldown_until_ms.load(Ordering::Relaxed)).unwrap_or(until)
    }
}

/// A gateway key as the hot path sees it.
pub struct KeyHandle {
    pub key: GatewayKey,
    /// `key.id`, shared, for per-request bookkeeping.
    pub id: Arc<str>,
    /// The key's own concurrency limit, when it has one.
    pub slots: Option<Arc<Semaphore>>,
}

/// What a bearer token is, as far as the published directory knows.
pub enum Lookup {
    Key(Arc<KeyHandle>),
    /// A key that exists but is revoked or expired.
    DeadKey,
    Account(Arc<AccountHandle>),
    Unknown,
}

/// Token → account or key, swapped whole whenever either set changes.
#[derive(Default)]
pub struct Directory {
    accounts: HashMap<[u8; 32], Arc<AccountHandle>>,
    /// Every key on disk, revoked and expired ones too, so a dead key is
    /// refused without a disk check.
    keys: HashMap<[u8; 32], Arc<KeyHandle>>,
    keys_by_id: HashMap<String, Arc<KeyHandle>>,
    /// Accounts in a stable order, for round robin.
    ordered: Vec<Arc<AccountHandle>>,
}

pub type SharedDirectory = Arc<ArcSwap<Directory>>;

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Directory {
    pub(super) fn new(
        accounts: Vec<Arc<AccountHandle>>,
        keys: Vec<(String, Arc<KeyHandle>)>,
    ) -> Self {
        Self {
            accounts: accounts
                .iter()
                .map(|h| (digest(&h.id), h.clone()))
                .collect(),
            keys_by_id: keys
                .iter()
                .map(|(_, k)| (k.key.id.clone(), k.clone()))
                .collect(),
            keys: keys
                .into_iter()
                .map(|(hash, k)| (hex_digest(&hash), k))
                .collect(),
            ordered: accounts,
        }
    }

    /// Who `token` is, with one digest of it. Accounts are keyed by the
    /// digest of their uuid and the final comparison is constant-time, so
    /// response timing says nothing about how close a guess was. A key
    /// (stored as its SHA-256 digest) counts only while usable: one that
    /// expired since the directory was published must not wait for the
    /// next rescan to stop working.
    pub fn lookup(&self, token: &str) -> Lookup {
        let digest = digest(token);
        if let Some(key) = self.keys.get(&digest) {
            return match key.key.is_usable(Utc::now()) {
                true => Lookup::Key(key.clone()),
                false => Lookup::DeadKey,
            };
        }
        match self.accounts.get(&digest) {
            Some(handle) if bool::from(handle.id.as_bytes().ct_eq(token.as_bytes())) => {
                Lookup::Account(handle.clone())
            }
            _ => Lookup::Unknown,
        }
    }

    pub fn key_by_id(&self, id: &str) -> Option<Arc<KeyHandle>> {
        self.keys_by_id.get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.ordered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    pub fn handles(&self) -> &[Arc<AccountHandle>] {
        &self.ordered
    }

    /// Accounts the pool could use now.
    pub fn usable_count(&self, now: DateTime<Utc>) -> usize {
        self.ordered.iter().filter(|h| h.health.usable(now)).count()
    }
}

/// The stored hex SHA-256 back to bytes (a malformed one maps to nothing usable).
fn hex_digest(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = hex
            .get(i * 2..i * 2 + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_backs_off_and_caps() {
        let p = CooldownPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        assert_eq!(p.delay(1, None), Duration::from_secs(5));
        assert_eq!(p.delay(3, None), Duration::from_secs(20));
        assert_eq!(p.delay(30, None), Duration::from_secs(60));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(86_400 * 3))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn health_follows_cooldown_and_quarantine() {
        let h = AccountHealth::default();
        let now = Utc::now();
        assert!(h.usable(now));
        let p = CooldownPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        let until = h.start_cooldown(&p, None, now);
        assert!(until > now);
        assert!(!h.usable(now));
        assert_eq!(h.label(now), "cooldown");
        assert!(h.usable(now + chrono::Duration::seconds(6)));
        h.refuse_key();
        assert_eq!(h.label(now + chrono::Duration::seconds(6)), "key-invalid");
        assert!(!h.usable(now + chrono::Duration::seconds(6)));
        h.forgive_key();
        assert!(h.usable(now + chrono::Duration::seconds(6)));
    }

    #[test]
    fn hex_digest_round_trips() {
        let d = digest("sk-iflow-x");
        let hex = crate::profile::iflow::signature::hex(&d);
        assert_eq!(hex_digest(&hex), d);
    }
}
