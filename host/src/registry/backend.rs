//! Where artifacts live: content-addressed blobs and tags per repository, the shape of the
//! OCI distribution API. Everything above (versions, yanks, signatures, digest checks) is
//! written once in [`super::Registry`] over this trait.

use anyhow::{Context, Result, bail};
use sha2::Digest;
use std::path::{Path, PathBuf};

/// A store of blobs and tagged manifests, per repository (one per plugin name). An enum rather
/// than a trait object: its operations are async, and there are two kinds.
pub enum Backend {
    /// A directory; its files are small and local, read and written in place.
    Dir(DirBackend),
    Oci(super::oci::OciBackend),
}

impl Backend {
    /// The repositories (plugin names) it holds.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        match self {
            Backend::Dir(d) => d.repositories(),
            Backend::Oci(o) => o.repositories().await,
        }
    }

    /// The tags of one repository (none if it does not exist).
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        match self {
            Backend::Dir(d) => d.tags(repo),
            Backend::Oci(o) => o.tags(repo).await,
        }
    }

    /// A manifest's bytes by tag or `sha256:` digest; `None` if there is none.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Backend::Dir(d) => d.manifest(repo, reference),
            Backend::Oci(o) => o.manifest(repo, reference).await,
        }
    }

    /// A blob's bytes (not yet checked against its digest: the caller does that).
    pub async fn blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>> {
        match self {
            Backend::Dir(d) => d.blob(repo, digest),
            Backend::Oci(o) => o.blob(repo, digest).await,
        }
    }

    pub async fn put_blob(&self, repo: &str, digest: &str, bytes: &[u8]) -> Result<()> {
        match self {
            Backend::Dir(d) => d.put_blob(repo, digest, bytes),
            Backend::Oci(o) => o.put_blob(repo, digest, bytes).await,
        }
    }

    /// Stores a manifest and points `tag` at it.
    pub async fn put_manifest(&self, repo: &str, tag: &str, bytes: &[u8]) -> Result<()> {
        match self {
            Backend::Dir(d) => d.put_manifest(repo, tag, bytes),
            Backend::Oci(o) => o.put_manifest(repo, tag, bytes).await,
        }
    }
}

/// `sha256:<hex>` of some bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A registry in a directory: `<root>/<repo>/blobs/sha256/<hex>` and `<root>/<repo>/tags/<tag>`
/// (holding the manifest's digest). Writes go through a temporary file and a rename, so a
/// reader never sees half a blob.
pub struct DirBackend {
    root: PathBuf,
}

impl DirBackend {
    pub fn new(root: PathBuf) -> DirBackend {
        DirBackend { root }
    }

    /// A repository's directory: a registry name is one path segment.
    fn repo_dir(&self, repo: &str) -> Result<PathBuf> {
        super::check_name(repo)?;
        Ok(self.root.join(repo))
    }

    fn blob_path(&self, repo: &str, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .with_context(|| format!("{digest:?} is not a sha256 digest"))?;
        Ok(self.repo_dir(repo)?.join("blobs/sha256").join(hex))
    }

    /// A tag's file: OCI's tag grammar (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`), one segment.
    fn tag_path(&self, repo: &str, tag: &str) -> Result<PathBuf> {
        let valid = tag.len() <= 128
            && tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            bail!("{tag:?} is not an OCI tag");
        }
        Ok(self.repo_dir(repo)?.join("tags").join(tag))
    }
}

/// Writes a file through a temporary file beside it and a rename: a reader sees the old file
/// or the new one, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn names_in(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

impl DirBackend {
    fn repositories(&self) -> Result<Vec<String>> {
        names_in(&self.root)
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>> {
        names_in(&self.repo_dir(repo)?.join("tags"))
    }

    fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Vec<u8>>> {
        let digest = if reference.starts_with("sha256:") {
            reference.to_string()
        } else {
            match read_optional(&self.tag_path(repo, reference)?)? {
                Some(d) => String::from_utf8_lossy(&d).trim().to_string(),
                None => return Ok(None),
            }
        };
        read_optional(&self.blob_path(repo, &digest)?)
    }

    fn blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(repo, digest)?;
        read_optional(&path)?.with_context(|| format!("{repo}: no blob {digest}"))
    }

    fn put_blob(&self, repo: &str, digest: &str, bytes: &[u8]) -> Result<()> {
        if digest_of(bytes) != digest {
            bail!("{repo}: the blob's bytes are not {digest}");
        }
        write_atomically(&self.blob_path(repo, digest)?, bytes)
    }

    fn put_manifest(&self, repo: &str, tag: &str, bytes: &[u8]) -> Result<()> {
        let digest = digest_of(bytes);
        self.put_blob(repo, &digest, bytes)?;
        write_atomically(&self.tag_path(repo, tag)?, digest.as_bytes())
    }
}
