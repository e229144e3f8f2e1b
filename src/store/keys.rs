//! Gateway keys: the client-facing API keys (`sk-iflow-…`) that use the
//! account pool. Only a SHA-256 of each key is stored, one file per key
//! under `<data>/keys/`; the plain key is shown once, at creation.

use super::StoreError;
use super::files::JsonDir;
use crate::secret::Secret;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const KEY_PREFIX: &str = "sk-iflow-";

/// Files that could not be read, with the reason.
pub type Problems = Vec<(PathBuf, String)>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatewayKey {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Lowercase hex SHA-256 of the whole key.
    pub hash: String,
    /// The first characters of the key, for telling keys apart.
    pub prefix: String,
    /// May read `/v1/usage` and `/metrics`.
    #[serde(default)]
    pub admin: bool,
    /// Models this key may use (`glm-*` matches a prefix); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_models: Vec<String>,
    /// Requests this key may have in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Settings of a new key.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub name: String,
    pub admin: bool,
    pub allowed_models: Vec<String>,
    pub max_concurrency: Option<usize>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Whether `model` is in `list`; an empty list allows every model and an
/// entry ending in `*` matches a prefix.
pub fn model_allowed(list: &[String], model: &str) -> bool {
    list.is_empty()
        || list.iter().any(|m| match m.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => m == model,
        })
}

/// Lowercase hex SHA-256, the stored form of a key.
pub fn hash_key(plain: &str) -> String {
    crate::profile::iflow::signature::hex(&Sha256::digest(plain.as_bytes()))
}

impl GatewayKey {
    /// A new random key; returns the record and the plain key (shown once).
    pub fn generate(spec: KeySpec, now: DateTime<Utc>) -> Result<(Self, Secret), StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| StoreError::Invalid(format!("no randomness for a key: {e}")))?;
        let plain = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let id = format!("key-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let key = Self {
            id,
            name: spec.name,
            hash: hash_key(&plain),
            prefix: plain.chars().take(KEY_PREFIX.len() + 4).collect(),
            admin: spec.admin,
            allowed_models: spec.allowed_models,
            max_concurrency: spec.max_concurrency,
            expires_at: spec.expires_at,
            revoked_at: None,
            created_at: now,
            extra: Map::new(),
        };
        Ok((key, Secret::new(plain)))
    }

    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }

    /// Whether `model` is in the allow-list (a trailing `*` matches a prefix).
    pub fn allows_model(&self, model: &str) -> bool {
        model_allowed(&self.allowed_models, model)
    }
}

#[derive(Debug, Clone)]
pub struct KeyStore {
    files: JsonDir,
}

impl KeyStore {
    /// Opens (creating if needed) `<data_dir>/keys`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            files: JsonDir::open(data_dir.join("keys"))?,
        })
    }

    /// Every readable key file; broken ones are reported.
    pub fn scan(&self) -> Result<(Vec<GatewayKey>, Problems), StoreError> {
        let mut keys = Vec::new();
        let mut problems = Vec::new();
        for name in self.files.json_names()? {
            let Some(bytes) = self.files.read(&name)? else {
                continue;
            };
            match serde_json::from_slice::<GatewayKey>(&bytes) {
                Ok(k) if format!("{}.json", k.id) == name => keys.push(k),
                Ok(k) => problems.push((
                    self.files.path(&name),
                    format!("id {} does not match", k.id),
                )),
                Err(e) => problems.push((self.files.path(&name), e.to_string())),
            }
        }
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok((keys, problems))
    }

    pub fn create(&self, key: &GatewayKey) -> Result<(), StoreError> {
        let _lock = self.files.lock()?;
        self.write(key)
    }

    /// Marks one key revoked, named by its id, a unique start (8+
    /// characters) of the id, a unique start of its shown prefix that goes
    /// past `sk-iflow-`, or the whole plain key.
    pub fn revoke(&self, id: &str, now: DateTime<Utc>) -> Result<GatewayKey, StoreError> {
        let _lock = self.files.lock()?;
        let (keys, _) = self.scan()?;
        let whole_key_hash =
            (id.starts_with(KEY_PREFIX) && id.len() > KEY_PREFIX.len() + 4).then(|| hash_key(id));
        let by_key = |k: &GatewayKey| match &whole_key_hash {
            Some(hash) => *hash == k.hash,
            None => id.len() > KEY_PREFIX.len() && k.prefix.starts_with(id),
        };
        let matches: Vec<GatewayKey> = keys
            .into_iter()
            .filter(|k| k.id == id || (id.len() >= 8 && k.id.starts_with(id)) || by_key(k))
            .collect();
        let mut key = match matches.len() {
            1 => matches
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::KeyNotFound(id.into()))?,
            0 => return Err(StoreError::KeyNotFound(id.to_string())),
            _ => {
                return Err(StoreError::Invalid(format!(
                    "{id:?} matches several keys; give the full id"
                )));
            }
        };
        key.revoked_at.get_or_insert(now);
        self.write(&key)?;
        Ok(key)
    }

    fn write(&self, key: &GatewayKey) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec_pretty(key).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.files.write_atomic(&format!("{}.json", key.id), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_and_revocable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path()).expect("open");
        let (key, plain) = GatewayKey::generate(
            KeySpec {
                name: "ci".into(),
                allowed_models: vec!["glm-*".into(), "kimi-k2.5".into()],
                ..KeySpec::default()
            },
            Utc::now(),
        )
        .expect("generate");
        assert!(plain.expose().starts_with(KEY_PREFIX));
        assert_eq!(plain.expose().len(), KEY_PREFIX.len() + 43);
        store.create(&key).expect("create");
        let on_disk =
            std::fs::read_to_string(dir.path().join("keys").join(format!("{}.json", key.id)))
                .expect("file");
        assert!(!on_disk.contains(plain.expose()));
        assert!(on_disk.contains(&hash_key(plain.expose())));

        assert!(key.allows_model("glm-5") && key.allows_model("kimi-k2.5"));
        assert!(!key.allows_model("kimi-k2") && !key.allows_model("qwen3-max"));

        let revoked = store.revoke(&key.id, Utc::now()).expect("revoke");
        assert!(!revoked.is_usable(Utc::now()));
        assert!(matches!(
            store.revoke("key-nothing", Utc::now()),
            Err(StoreError::KeyNotFound(_))
        ));
    }

    #[test]
    fn a_key_is_revoked_by_its_whole_text_or_shown_prefix_never_by_sk_iflow_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path()).expect("open");
        let (a, plain_a) = GatewayKey::generate(KeySpec::default(), Utc::now()).expect("a");
        store.create(&a).expect("create");
        for vague in ["sk-iflow", "sk-iflow-"] {
            assert!(
                matches!(
                    store.revoke(vague, Utc::now()),
                    Err(StoreError::KeyNotFound(_))
                ),
                "{vague:?} named a key"
            );
        }
        let wrong = format!("{}x", plain_a.expose());
        assert!(matches!(
            store.revoke(&wrong, Utc::now()),
            Err(StoreError::KeyNotFound(_))
        ));
        let revoked = store
            .revoke(plain_a.expose(), Utc::now())
            .expect("whole key");
        assert_eq!(revoked.id, a.id);

        let (b, _) = GatewayKey::generate(KeySpec::default(), Utc::now()).expect("b");
        store.create(&b).expect("create");
        let revoked = store.revoke(&b.prefix, Utc::now()).expect("prefix");
        assert_eq!(revoked.id, b.id);
    }

    #[test]
    fn expiry_ends_usability() {
        let (mut key, _) = GatewayKey::generate(KeySpec::default(), Utc::now()).expect("key");
        assert!(key.is_usable(Utc::now()));
        key.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
        assert!(!key.is_usable(Utc::now()));
    }
}
