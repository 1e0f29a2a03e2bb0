//! JIT parameters as files (mode 0600) under `<state>/params/`, one per name
//! (`/` and `%` percent-encoded), so that the `aws` shim on a runner's PATH can
//! read and delete them like `aws ssm get-parameter` / `delete-parameter`.
//! Tags go to the state database.

use crate::db::{Db, err};
use async_trait::async_trait;
use rusqlite::params;
use spotrunner_core::ports::{PortError, RunnerParameters, tags};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const SERVICE: &str = "parameters";

/// The file name of parameter `name` (the shim encodes alike).
pub fn encode(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

fn decode(file: &str) -> String {
    file.replace("%2F", "/").replace("%25", "%")
}

/// [`RunnerParameters`] on files.
#[derive(Clone)]
pub struct FileParameters {
    dir: PathBuf,
    db: Db,
}

fn io(e: std::io::Error) -> PortError {
    PortError::unavailable(SERVICE, e)
}

impl FileParameters {
    pub fn new(dir: &Path, db: Db) -> Result<Self, PortError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            db,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(encode(name))
    }
}

#[async_trait]
impl RunnerParameters for FileParameters {
    async fn put(
        &self,
        name: &str,
        value: &str,
        tags: &[(String, String)],
    ) -> Result<(), PortError> {
        let path = self.path(name);
        let tmp = self.dir.join(format!(".{}.tmp", encode(name)));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(value.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        let tags = serde_json::to_string(tags).map_err(|e| PortError::rejected(SERVICE, e))?;
        self.db.tx(|tx| {
            tx.execute(
                "INSERT INTO parameter_tags (name, tags) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET tags = excluded.tags",
                params![name, tags],
            )
            .map_err(err)?;
            Ok(())
        })
    }

    async fn exists(&self, name: &str) -> Result<bool, PortError> {
        Ok(self.path(name).is_file())
    }

    async fn bind_to_instance(&self, name: &str, instance_id: &str) -> Result<(), PortError> {
        let (key, value) = (tags::INSTANCE_ID, instance_id);
        if !self.path(name).is_file() {
            return Err(PortError::NotFound {
                service: SERVICE,
                what: format!("parameter {name}"),
            });
        }
        self.db.tx(|tx| {
            let old: Option<String> = rusqlite::OptionalExtension::optional(tx.query_row(
                "SELECT tags FROM parameter_tags WHERE name = ?1",
                params![name],
                |r| r.get(0),
            ))
            .map_err(err)?;
            let mut tags: Vec<(String, String)> = old
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            tags.retain(|(k, _)| k != key);
            tags.push((key.to_string(), value.to_string()));
            let doc = serde_json::to_string(&tags).map_err(|e| PortError::rejected(SERVICE, e))?;
            tx.execute(
                "INSERT INTO parameter_tags (name, tags) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET tags = excluded.tags",
                params![name, doc],
            )
            .map_err(err)?;
            Ok(())
        })
    }

    async fn delete(&self, name: &str) -> Result<(), PortError> {
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        self.db.tx(|tx| {
            tx.execute("DELETE FROM parameter_tags WHERE name = ?1", params![name])
                .map_err(err)?;
            Ok(())
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, PortError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let file = entry.file_name().to_string_lossy().to_string();
            if file.starts_with('.') {
                continue;
            }
            let name = decode(&file);
            if name.starts_with(prefix) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }
}
