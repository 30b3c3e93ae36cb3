//! Bearer tokens: created by `rectify token add`, stored only as SHA-256 hashes in `<data dir>/tokens.jsonl`,
//! scoped by role and region. The running service rereads the file when it changes, so tokens added while it
//! runs work at once.

use anyhow::Context;
use rand::RngCore;
use rectify_domain::hex_text;
use rectify_domain::{Actor, RegionCode, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// One stored token: never the token itself, only its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The actor id events record for this token.
    pub id: String,
    pub sha256: String,
    pub role: Role,
    pub region: RegionCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<String>,
    #[serde(default)]
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn hash(token: &str) -> String {
    hex_text::encode(Sha256::digest(token.as_bytes()))
}

fn file(dir: &Path) -> PathBuf {
    dir.join("tokens.jsonl")
}

/// Creates a token, appends its hash to the store in `dir` and returns the token (shown once, never stored).
pub fn add(dir: &Path, role: Role, region: RegionCode, grid: Option<String>, name: &str) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("rfy_{}", hex_text::encode(secret));
    let record = TokenRecord {
        id: format!("tok_{}", &hash(&token)[..16]),
        sha256: hash(&token),
        role,
        region,
        grid,
        name: name.to_owned(),
        created_at: chrono::Utc::now(),
    };
    let mut line = serde_json::to_vec(&record)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file(dir))
        .with_context(|| format!("opening {}", file(dir).display()))?;
    f.write_all(&line)?;
    f.sync_all()?;
    Ok(token)
}

/// The tokens of a data dir, reloaded when the file changes.
pub struct TokenStore {
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

/// (Modification time and length of the file when read, records by hash.)
type Loaded = (Option<(SystemTime, u64)>, HashMap<String, TokenRecord>);

impl TokenStore {
    /// A store over `dir` (the file may not exist yet).
    pub fn open(dir: &Path) -> TokenStore {
        TokenStore { path: file(dir), loaded: RwLock::new((None, HashMap::new())) }
    }

    fn reload_if_changed(&self) {
        let modified = std::fs::metadata(&self.path).and_then(|m| Ok((m.modified()?, m.len()))).ok();
        if self.loaded.read().expect("token lock").0 == modified {
            return;
        }
        let mut records = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&self.path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<TokenRecord>(line) {
                    Ok(r) => {
                        records.insert(r.sha256.clone(), r);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "skipping an unreadable line of the token store")
                    }
                }
            }
        }
        *self.loaded.write().expect("token lock") = (modified, records);
    }

    /// The actor a bearer token stands for, if it is valid.
    pub fn authenticate(&self, token: &str) -> Option<Actor> {
        self.reload_if_changed();
        let digest = hash(token);
        let loaded = self.loaded.read().expect("token lock");
        let record = loaded.1.get(&digest)?;
        // The map lookup is by hash; compare again in constant time so no timing depends on the secret.
        bool::from(record.sha256.as_bytes().ct_eq(digest.as_bytes())).then(|| Actor {
            id: record.id.clone(),
            role: record.role,
            region: record.region,
            grid: record.grid.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let region = RegionCode::parse("520102").unwrap();
        let token = add(dir.path(), Role::CountyBureau, region, None, "nanming").unwrap();
        let stored = std::fs::read_to_string(dir.path().join("tokens.jsonl")).unwrap();
        assert!(!stored.contains(&token), "the token itself must not be stored");
        let store = TokenStore::open(dir.path());
        let actor = store.authenticate(&token).unwrap();
        assert_eq!((actor.role, actor.region), (Role::CountyBureau, region));
        assert!(store.authenticate("rfy_wrong").is_none());
        let second = add(dir.path(), Role::Inspector, RegionCode::parse("520000").unwrap(), None, "").unwrap();
        assert_eq!(store.authenticate(&second).unwrap().role, Role::Inspector);
    }
}
