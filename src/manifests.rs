//! Static manifest mode: ClusterStaticEntry and ClusterFederatedTrustDomain objects read
//! from a directory of YAML files instead of the Kubernetes API.
//!
//! Upstream reads one object per `.yaml` file and skips mismatching kinds; here a file
//! may hold several documents (`---`), `.yml` and `.json` files are read too, and a
//! change to the directory triggers a pass (polled; no inotify dependency). Any file
//! that fails to read or decode makes the whole snapshot incomplete: the pass is
//! skipped, nothing is deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use scm_api::{ClusterFederatedTrustDomain, ClusterStaticEntry};
use scm_core::World;
use tokio_util::sync::CancellationToken;

use crate::reconcile::ports::{CftdSource, WorldSource};
use crate::trigger::Trigger;

#[derive(Default, Clone, Debug)]
pub struct Manifests {
    pub static_entries: Vec<Arc<ClusterStaticEntry>>,
    pub federated_trust_domains: Vec<Arc<ClusterFederatedTrustDomain>>,
}

pub struct ManifestDir {
    pub dir: PathBuf,
    pub expand_env: bool,
}

impl ManifestDir {
    pub fn load(&self) -> Result<Manifests, String> {
        load_dir(&self.dir, self.expand_env, &|k| std::env::var(k).ok())
    }

    /// Polls the directory and pokes the triggers when anything in it changes.
    pub fn spawn_watch(&self, triggers: Vec<Trigger>, cancel: CancellationToken) {
        let dir = self.dir.clone();
        tokio::spawn(async move {
            let mut last = fingerprint(&dir);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                let now = fingerprint(&dir);
                if now != last {
                    tracing::info!(dir = %dir.display(), "manifest directory changed");
                    last = now;
                    triggers.iter().for_each(Trigger::notify);
                }
            }
        });
    }
}

impl WorldSource for ManifestDir {
    fn snapshot(&self) -> Result<World, String> {
        let m = self.load()?;
        Ok(World { cluster_static_entries: m.static_entries, ..Default::default() })
    }
}

fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(md) = e.metadata() {
                out.push((e.path(), md.len(), md.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

pub fn load_dir(dir: &Path, expand_env: bool, env: &dyn Fn(&str) -> Option<String>) -> Result<Manifests, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_file() && is_manifest(p)).collect();
    paths.sort();
    let mut out = Manifests::default();
    for path in paths {
        let mut text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if expand_env {
            text = scm_config::go_expand_env(&text, env).0;
        }
        for (i, doc) in split_documents(&text).into_iter().enumerate() {
            let value: serde_json::Value =
                serde_saphyr::from_str(doc).map_err(|e| format!("{} (document {}): {e}", path.display(), i + 1))?;
            if value.is_null() {
                continue;
            }
            let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            if api_version != scm_api::API_VERSION {
                tracing::debug!(file = %path.display(), api_version, kind, "skipping object of another API version");
                continue;
            }
            let at = |e: serde_json::Error| format!("{} (document {}, {kind}): {e}", path.display(), i + 1);
            match kind.as_str() {
                "ClusterStaticEntry" => {
                    let mut obj: ClusterStaticEntry = serde_json::from_value(value).map_err(at)?;
                    fill_identity(&mut obj.metadata, &path, i);
                    out.static_entries.push(Arc::new(obj));
                }
                "ClusterFederatedTrustDomain" => {
                    let mut obj: ClusterFederatedTrustDomain = serde_json::from_value(value).map_err(at)?;
                    fill_identity(&mut obj.metadata, &path, i);
                    out.federated_trust_domains.push(Arc::new(obj));
                }
                _ => {
                    tracing::debug!(file = %path.display(), kind, "skipping object of another kind")
                }
            }
        }
    }
    Ok(out)
}

/// Static objects have no UID; use a stable one so that precedence is deterministic.
fn fill_identity(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, path: &Path, index: usize) {
    if meta.uid.is_none() {
        meta.uid = Some(format!("{}#{index}", path.display()));
    }
    if meta.name.is_none() {
        meta.name = Some(format!("{}#{index}", path.file_name().and_then(|n| n.to_str()).unwrap_or("manifest")));
    }
}

/// Splits a multi-document YAML stream on `---` lines.
fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            docs.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    docs.push(&text[start..]);
    docs.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

impl CftdSource for ManifestDir {
    fn list(&self) -> Result<Vec<Arc<ClusterFederatedTrustDomain>>, String> {
        Ok(self.load()?.federated_trust_domains)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_and_kinds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: one\nspec:\n  spiffeID: spiffe://td/one\n  parentID: spiffe://td/spire/server\n  selectors: [\"unix:uid:0\"]\n---\napiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterFederatedTrustDomain\nmetadata:\n  name: fed\nspec:\n  trustDomain: other.org\n  bundleEndpointURL: https://other.org:8443\n  bundleEndpointProfile:\n    type: https_web\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: skipped\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let m = load_dir(dir.path(), false, &|_| None).unwrap();
        assert_eq!(m.static_entries.len(), 1);
        assert_eq!(m.federated_trust_domains.len(), 1);
        assert_eq!(m.static_entries[0].spec.spiffe_id, "spiffe://td/one");
    }

    #[test]
    fn a_bad_file_fails_the_whole_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.yaml"), "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata: {name: a}\nspec: {spiffeID: 'spiffe://td/a', parentID: 'spiffe://td/p', selectors: ['a:b']}\n").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata: {name: b}\nspec: {parentID: 3}\n").unwrap();
        let err = load_dir(dir.path(), false, &|_| None).unwrap_err();
        assert!(err.contains("bad.yaml"), "{err}");
    }

    #[test]
    fn env_expansion() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("e.yaml"), "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata: {name: a}\nspec: {spiffeID: 'spiffe://${TD}/a', parentID: 'spiffe://td/p', selectors: ['a:b']}\n").unwrap();
        let m = load_dir(dir.path(), true, &|k| (k == "TD").then(|| "expanded.org".to_owned())).unwrap();
        assert_eq!(m.static_entries[0].spec.spiffe_id, "spiffe://expanded.org/a");
    }
}
